package turbojpeg

import "github.com/headtune/headtune/imaging"

// init installs DecodeScaled as imaging.FastJPEGDecoder, so that a blank
// import
//
//	import _ "github.com/headtune/headtune/imaging/turbojpeg"
//
// is all a program needs. The decoder is only used for specs with FastJPEG
// set (imaging.DecodeOptions.FastJPEG). The library is looked for on the
// first such decode, not at init, so a program may still call [Load] with a
// path from its flags; without the library the hook declines every image
// and imaging decodes with image/jpeg.
func init() {
	imaging.FastJPEGDecoder = fastJPEG
}

// fastJPEG adapts DecodeScaled to imaging.FastJPEGDecoder. The hook's
// contract gives the image to the caller, so each call allocates its pixels.
// Any failure (corrupt data, a libjpeg warning, CMYK) is returned with
// ok=false, and imaging falls back to image/jpeg, which reports its own
// error when the file really is broken.
func fastJPEG(data []byte, minW, minH int) (*imaging.RGB, bool, error) {
	if !Available() {
		return nil, false, nil
	}
	w, h, pix, err := DecodeScaled(data, minW, minH, nil)
	if err != nil {
		return nil, false, err
	}
	return &imaging.RGB{W: w, H: h, Pix: pix}, true, nil
}
