//go:build !amd64

package head

const useAVX2 = false

func dotAVX2(x, y []float32) float32     { panic("unreachable") }
func axpyAVX2(a float32, x, y []float32) { panic("unreachable") }

func standardizeAVX2(dst, x, mean, invStd []float32) { panic("unreachable") }
