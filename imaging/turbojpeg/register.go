package turbojpeg

import "github.com/headtune/headtune/imaging"

// init plugs libjpeg-turbo into imaging's fast-JPEG hooks without loading
// it: the library is looked for on the first fast decode, so a command-line
// flag can still call Load first. Without the library the hooks decline and
// imaging falls back to image/jpeg.
func init() {
	imaging.FastJPEGDecoder = fastJPEG
	imaging.FastJPEGDecodeInto = fastJPEGInto
}

func fastJPEG(data []byte, minW, minH int) (*imaging.RGB, bool, error) {
	img, ok, err := fastJPEGInto(data, minW, minH, nil)
	if !ok || err != nil {
		return nil, ok, err
	}
	return &img, true, nil
}

// fastJPEGInto decodes into dst's memory when it is large enough, sparing
// an allocation (about 230 KB for a 640x480 photo at 1/2) and a copy per
// image.
func fastJPEGInto(data []byte, minW, minH int, dst []uint8) (imaging.RGB, bool, error) {
	if !Available() {
		return imaging.RGB{}, false, nil
	}
	w, h, pix, err := DecodeScaled(data, minW, minH, dst)
	if err != nil {
		return imaging.RGB{}, false, err
	}
	return imaging.RGB{W: w, H: h, Pix: pix}, true, nil
}
