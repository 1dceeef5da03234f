#include "textflag.h"

// Both kernels keep Pillow's fixed-point arithmetic exactly: 32-bit
// products and sums (VPMULLD, VPADDD wrap like Go's int32), an arithmetic
// shift by 22 bits, then a clamp to 0..255 done by two saturating packs
// (int32 -> int16 -> uint8), which clamps any int32 the way clip8 does.

// HTAP adds tap j of an output pair: the RGB (plus one stray byte) of
// source pixel starts[x]+j for output x in the low lane and of
// starts[x+1]+j in the high lane, times their expanded weights at
// off(DX); soff = 3*j, woff = 32*j.
#define HTAP(soff, woff) \
	VPMOVZXBD   soff(AX), X1; \
	VPMOVZXBD   soff(R12), X3; \
	VINSERTI128 $1, X3, Y1, Y1; \
	VPMULLD     woff(DX), Y1, Y1; \
	VPADDD      Y1, Y0, Y0

// HPROLOGUE loads the arguments shared by the horizontal kernels: o (DI),
// s (SI), starts (R8, length CX), wx (DX), and fixedHalf in every lane of
// Y7; BX counts output pixels.
#define HPROLOGUE \
	MOVQ         o_base+0(FP), DI; \
	MOVQ         s_base+24(FP), SI; \
	MOVQ         starts_base+48(FP), R8; \
	MOVQ         starts_len+56(FP), CX; \
	MOVQ         wx_base+72(FP), DX; \
	MOVL         $0x200000, AX; \
	VMOVD        AX, X7; \
	VPBROADCASTD X7, Y7; \
	XORQ         BX, BX

// HPAIR points AX and R12 at the first source pixel of outputs BX and
// BX+1 and starts their sums at fixedHalf.
#define HPAIR \
	MOVLQSX (R8)(BX*4), AX; \
	MOVLQSX 4(R8)(BX*4), R12; \
	LEAQ    (AX)(AX*2), AX; \
	LEAQ    (R12)(R12*2), R12; \
	ADDQ    SI, AX; \
	ADDQ    SI, R12; \
	VMOVDQA Y7, Y0

// HSTORE shifts, clamps and stores the pair (4 bytes each, the second
// store overwriting the stray fourth byte of the first) and moves on.
#define HSTORE \
	VPSRAD       $22, Y0, Y0; \
	VPACKSSDW    Y0, Y0, Y0; \
	VPACKUSWB    Y0, Y0, Y0; \
	VMOVD        X0, (DI); \
	VEXTRACTI128 $1, Y0, X1; \
	VMOVD        X1, 3(DI); \
	ADDQ         $6, DI; \
	ADDQ         $2, BX

// func verticalRowAVX2(o, mid []uint8, w3 int, k []int32)
TEXT ·verticalRowAVX2(SB), NOSPLIT, $0-80
	MOVQ         o_base+0(FP), DI
	MOVQ         o_len+8(FP), CX
	MOVQ         mid_base+24(FP), SI
	MOVQ         w3+48(FP), R8
	MOVQ         k_base+56(FP), DX
	MOVQ         k_len+64(FP), R9
	MOVL         $0x200000, AX // fixedHalf
	VMOVD        AX, X7
	VPBROADCASTD X7, Y7
	XORQ         BX, BX
	TESTQ        R9, R9
	JZ           vdone

vloop:
	CMPQ    BX, CX
	JGE     vdone
	VMOVDQA Y7, Y0
	VMOVDQA Y7, Y1
	LEAQ    (SI)(BX*1), R10
	XORQ    R11, R11

vtap:
	VPBROADCASTD (DX)(R11*4), Y2
	VPMOVZXBD    (R10), Y3
	VPMOVZXBD    8(R10), Y4
	VPMULLD      Y2, Y3, Y3
	VPMULLD      Y2, Y4, Y4
	VPADDD       Y3, Y0, Y0
	VPADDD       Y4, Y1, Y1
	ADDQ         R8, R10
	INCQ         R11
	CMPQ         R11, R9
	JLT          vtap

	VPSRAD       $22, Y0, Y0
	VPSRAD       $22, Y1, Y1
	VPACKSSDW    Y1, Y0, Y0       // lanes: [Y0 0-3, Y1 0-3 | Y0 4-7, Y1 4-7]
	VPERMQ       $0xD8, Y0, Y0    // [Y0 0-7 | Y1 0-7]
	VEXTRACTI128 $1, Y0, X1
	VPACKUSWB    X1, X0, X0
	VMOVDQU      X0, (DI)(BX*1)
	ADDQ         $16, BX
	JMP          vloop

vdone:
	VZEROUPPER
	RET

// func horizontalPairsAVX2(o, s []uint8, starts, wx []int32, ks int)
// Any tap count, with a loop over the taps.
TEXT ·horizontalPairsAVX2(SB), NOSPLIT, $0-104
	HPROLOGUE
	MOVQ  ks+96(FP), R9
	TESTQ R9, R9
	JZ    hdone

hloop:
	CMPQ BX, CX
	JGE  hdone
	HPAIR
	MOVQ R9, R11

htap:
	HTAP(0, 0)
	ADDQ $3, AX
	ADDQ $3, R12
	ADDQ $32, DX
	DECQ R11
	JNZ  htap
	HSTORE
	JMP  hloop

hdone:
	VZEROUPPER
	RET

// func horizontalPairs2AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 2; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs2AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h2loop:
	CMPQ BX, CX
	JGE  h2done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	ADDQ $64, DX
	HSTORE
	JMP  h2loop

h2done:
	VZEROUPPER
	RET

// func horizontalPairs3AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 3; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs3AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h3loop:
	CMPQ BX, CX
	JGE  h3done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	ADDQ $96, DX
	HSTORE
	JMP  h3loop

h3done:
	VZEROUPPER
	RET

// func horizontalPairs4AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 4; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs4AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h4loop:
	CMPQ BX, CX
	JGE  h4done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	HTAP(9, 96)
	ADDQ $128, DX
	HSTORE
	JMP  h4loop

h4done:
	VZEROUPPER
	RET

// func horizontalPairs5AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 5; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs5AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h5loop:
	CMPQ BX, CX
	JGE  h5done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	HTAP(9, 96)
	HTAP(12, 128)
	ADDQ $160, DX
	HSTORE
	JMP  h5loop

h5done:
	VZEROUPPER
	RET

// func horizontalPairs6AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 6; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs6AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h6loop:
	CMPQ BX, CX
	JGE  h6done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	HTAP(9, 96)
	HTAP(12, 128)
	HTAP(15, 160)
	ADDQ $192, DX
	HSTORE
	JMP  h6loop

h6done:
	VZEROUPPER
	RET

// func horizontalPairs7AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 7; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs7AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h7loop:
	CMPQ BX, CX
	JGE  h7done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	HTAP(9, 96)
	HTAP(12, 128)
	HTAP(15, 160)
	HTAP(18, 192)
	ADDQ $224, DX
	HSTORE
	JMP  h7loop

h7done:
	VZEROUPPER
	RET

// func horizontalPairs8AVX2(o, s []uint8, starts, wx []int32, ks int)
// ks is 8; the argument keeps the signature of horizontalPairsAVX2.
TEXT ·horizontalPairs8AVX2(SB), NOSPLIT, $0-104
	HPROLOGUE

h8loop:
	CMPQ BX, CX
	JGE  h8done
	HPAIR
	HTAP(0, 0)
	HTAP(3, 32)
	HTAP(6, 64)
	HTAP(9, 96)
	HTAP(12, 128)
	HTAP(15, 160)
	HTAP(18, 192)
	HTAP(21, 224)
	ADDQ $256, DX
	HSTORE
	JMP  h8loop

h8done:
	VZEROUPPER
	RET
