package imaging

import (
	"bytes"
	"encoding/binary"
)

// orientation returns the EXIF orientation (1-8) recorded in an image file
// of the given format, or 1: JPEG APP1 Exif, PNG eXIf chunk, WebP EXIF
// chunk, or the TIFF's own IFD0 tag. GIF and BMP carry none.
func orientation(format string, data []byte) int {
	switch format {
	case FormatJPEG:
		return jpegOrientation(data)
	case FormatTIFF:
		return exifOrientation(data)
	case FormatPNG:
		return pngOrientation(data)
	case FormatWebP:
		return webpOrientation(data)
	}
	return 1
}

// pngOrientation walks the chunks of a PNG for eXIf.
func pngOrientation(data []byte) int {
	i := 8
	for i+8 <= len(data) {
		n := int64(binary.BigEndian.Uint32(data[i:]))
		typ := string(data[i+4 : i+8])
		end := int64(i) + 8 + n
		if end > int64(len(data)) {
			return 1
		}
		switch typ {
		case "eXIf":
			return exifOrientation(stripExifPrefix(data[i+8 : end]))
		case "IEND":
			return 1
		}
		i = int(end) + 4 // skip the CRC
	}
	return 1
}

// webpOrientation walks the RIFF chunks of a WebP for EXIF.
func webpOrientation(data []byte) int {
	i := 12
	for i+8 <= len(data) {
		n := int64(binary.LittleEndian.Uint32(data[i+4:]))
		end := int64(i) + 8 + n
		if end > int64(len(data)) {
			return 1
		}
		if string(data[i:i+4]) == "EXIF" {
			return exifOrientation(stripExifPrefix(data[i+8 : end]))
		}
		i = int(end + end&1) // chunks are padded to even sizes
	}
	return 1
}

// stripExifPrefix removes the "Exif\0\0" header some writers put before
// the TIFF structure in PNG and WebP.
func stripExifPrefix(b []byte) []byte {
	return bytes.TrimPrefix(b, []byte("Exif\x00\x00"))
}

// jpegOrientation returns the EXIF orientation (1-8) of a JPEG, or 1 when
// there is none or it cannot be read. It walks the marker segments before
// the first scan and reads tag 0x0112 of IFD0 in the first APP1 "Exif"
// segment. It never reads outside data.
func jpegOrientation(data []byte) int {
	i := 2 // after SOI
	for i+4 <= len(data) {
		if data[i] != 0xFF {
			return 1
		}
		marker := data[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 {
			i += 2
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			return 1
		}
		n := int(binary.BigEndian.Uint16(data[i+2:]))
		if n < 2 || i+2+n > len(data) {
			return 1
		}
		seg := data[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return exifOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// exifOrientation reads the orientation tag from a TIFF-structured EXIF
// block.
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 1
	}
	n := int64(bo.Uint16(t[off:]))
	for e := int64(0); e < n; e++ {
		p := off + 2 + 12*e
		if p+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[p:]) != 0x0112 {
			continue
		}
		typ, count := bo.Uint16(t[p+2:]), bo.Uint32(t[p+4:])
		var v int
		switch {
		case typ == 3 && count >= 1: // SHORT
			v = int(bo.Uint16(t[p+8:]))
		case typ == 4 && count >= 1: // LONG (non-standard but seen)
			v = int(bo.Uint32(t[p+8:]))
		default:
			return 1
		}
		if v >= 1 && v <= 8 {
			return v
		}
		return 1
	}
	return 1
}

// orientInto writes src transformed by EXIF orientation o into dst (which
// must not alias src): 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate
// 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
func orientInto(dst, src *RGB, o int) {
	w, h := src.W, src.H
	if o >= 5 {
		dst.reset(h, w)
	} else {
		dst.reset(w, h)
	}
	dw := dst.W
	sp, dp := src.Pix, dst.Pix
	// For each destination pixel (x, y), the source pixel is
	// (sx0 + x*dxx + y*dxy, sy0 + x*dyx + y*dyy).
	var sx0, sy0, dxx, dxy, dyx, dyy int
	switch o {
	case 2:
		sx0, dxx, dyy = w-1, -1, 1
	case 3:
		sx0, sy0, dxx, dyy = w-1, h-1, -1, -1
	case 4:
		sy0, dxx, dyy = h-1, 1, -1
	case 5:
		dxy, dyx = 1, 1
	case 6:
		sy0, dxy, dyx = h-1, 1, -1
	case 7:
		sx0, sy0, dxy, dyx = w-1, h-1, -1, -1
	case 8:
		sx0, dxy, dyx = w-1, -1, 1
	default:
		copy(dp, sp[:w*h*3])
		return
	}
	step := (dyx*w + dxx) * 3 // source offset change per destination x
	for y := 0; y < dst.H; y++ {
		si := ((sy0+y*dyy)*w + sx0 + y*dxy) * 3
		d := dp[y*dw*3 : (y+1)*dw*3]
		for x := 0; x < dw; x++ {
			q := sp[si : si+3 : si+3]
			d[3*x], d[3*x+1], d[3*x+2] = q[0], q[1], q[2]
			si += step
		}
	}
}
