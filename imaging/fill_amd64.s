#include "textflag.h"

// Normalisation: (float32(p)*scale - mean[c]) / std[c], each operation
// rounded to float32 (VMULPS, VSUBPS, VDIVPS), which is how lutFor computes
// its table: results are identical.

// Byte shuffles that pick one channel of 8 packed RGB pixels out of two
// overlapping 16-byte loads (bytes 0-15 and 8-23); the two halves are ORed.
DATA normRA<>+0(SB)/8, $0x80800f0c09060300
DATA normRA<>+8(SB)/8, $0x8080808080808080
GLOBL normRA<>(SB), RODATA|NOPTR, $16
DATA normRB<>+0(SB)/8, $0x0d0a808080808080
DATA normRB<>+8(SB)/8, $0x8080808080808080
GLOBL normRB<>(SB), RODATA|NOPTR, $16
DATA normGA<>+0(SB)/8, $0x8080800d0a070401
DATA normGA<>+8(SB)/8, $0x8080808080808080
GLOBL normGA<>(SB), RODATA|NOPTR, $16
DATA normGB<>+0(SB)/8, $0x0e0b088080808080
DATA normGB<>+8(SB)/8, $0x8080808080808080
GLOBL normGB<>(SB), RODATA|NOPTR, $16
DATA normBA<>+0(SB)/8, $0x8080800e0b080502
DATA normBA<>+8(SB)/8, $0x8080808080808080
GLOBL normBA<>(SB), RODATA|NOPTR, $16
DATA normBB<>+0(SB)/8, $0x0f0c098080808080
DATA normBB<>+8(SB)/8, $0x8080808080808080
GLOBL normBB<>(SB), RODATA|NOPTR, $16

#define NORM8(mean, std) \
	VPMOVZXBD X2, Y2; \
	VCVTDQ2PS Y2, Y2; \
	VMULPS    Y8, Y2, Y2; \
	VSUBPS    mean, Y2, Y2; \
	VDIVPS    std, Y2, Y2

// func normalisePlanarAVX2(r, g, b []float32, pix []uint8, k *[56]float32)
TEXT ·normalisePlanarAVX2(SB), NOSPLIT, $0-104
	MOVQ    r_base+0(FP), DI
	MOVQ    r_len+8(FP), CX
	MOVQ    g_base+24(FP), R8
	MOVQ    b_base+48(FP), R9
	MOVQ    pix_base+72(FP), SI
	MOVQ    k+96(FP), DX
	VMOVUPS (DX), Y8
	VMOVUPS 32(DX), Y9
	VMOVUPS 64(DX), Y10
	VMOVUPS 96(DX), Y11
	VMOVUPS 128(DX), Y12
	VMOVUPS 160(DX), Y13
	VMOVUPS 192(DX), Y14
	XORQ    BX, BX

ploop:
	CMPQ    BX, CX
	JGE     pdone
	VMOVDQU (SI), X0
	VMOVDQU 8(SI), X1

	VPSHUFB normRA<>(SB), X0, X2
	VPSHUFB normRB<>(SB), X1, X3
	VPOR    X3, X2, X2
	NORM8(Y9, Y12)
	VMOVUPS Y2, (DI)(BX*4)

	VPSHUFB normGA<>(SB), X0, X2
	VPSHUFB normGB<>(SB), X1, X3
	VPOR    X3, X2, X2
	NORM8(Y10, Y13)
	VMOVUPS Y2, (R8)(BX*4)

	VPSHUFB normBA<>(SB), X0, X2
	VPSHUFB normBB<>(SB), X1, X3
	VPOR    X3, X2, X2
	NORM8(Y11, Y14)
	VMOVUPS Y2, (R9)(BX*4)

	ADDQ $24, SI
	ADDQ $8, BX
	JMP  ploop

pdone:
	VZEROUPPER
	RET

#define NORMI(off, mean, std) \
	VPMOVZXBD off(SI), Y2; \
	VCVTDQ2PS Y2, Y2; \
	VMULPS    Y8, Y2, Y2; \
	VSUBPS    mean, Y2, Y2; \
	VDIVPS    std, Y2, Y2; \
	VMOVUPS   Y2, (off*4)(DI)

// func normaliseInterleavedAVX2(dst []float32, pix []uint8, k *[56]float32)
TEXT ·normaliseInterleavedAVX2(SB), NOSPLIT, $0-56
	MOVQ    dst_base+0(FP), DI
	MOVQ    dst_len+8(FP), CX
	MOVQ    pix_base+24(FP), SI
	MOVQ    k+48(FP), DX
	VMOVUPS (DX), Y8
	VMOVUPS 32(DX), Y9
	VMOVUPS 64(DX), Y10
	VMOVUPS 96(DX), Y11
	VMOVUPS 128(DX), Y12
	VMOVUPS 160(DX), Y13
	VMOVUPS 192(DX), Y14
	LEAQ    (DI)(CX*4), CX

iloop:
	CMPQ DI, CX
	JGE  idone
	NORMI(0, Y9, Y12)
	NORMI(8, Y10, Y13)
	NORMI(16, Y11, Y14)
	ADDQ $24, SI
	ADDQ $96, DI
	JMP  iloop

idone:
	VZEROUPPER
	RET
