//go:build !amd64

package imaging

var resizeAVX2 = false // a variable, so that tests can switch it like on amd64

func verticalRowAVX2(o, mid []uint8, w3 int, k []int32)            { panic("unreachable") }
func horizontalPairsAVX2(o, s []uint8, starts, wx []int32, ks int) { panic("unreachable") }

func horizontalPairsFor(ks int) func(o, s []uint8, starts, wx []int32, ks int) {
	panic("unreachable")
}
