package featcache

import (
	"testing"
)

func FuzzReadIndex(f *testing.F) {
	dim := 4
	good := encodeHeader(dim)
	for i := 0; i < 3; i++ {
		var rec [RecordSize]byte
		putRecord(rec[:], record{key: itemKey(i), row: int64(i), crc: uint32(i)})
		good = append(good, rec[:]...)
	}
	f.Add(good)
	f.Add(good[:len(good)-7])               // torn
	f.Add(append(good[:0:0], good[:48]...)) // header only
	f.Add([]byte{})
	bad := append([]byte(nil), good...)
	bad[48+40] ^= 1 // first record damaged, later ones intact
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseIndex(data, nil)
		if err != nil {
			return
		}
		if s.dim <= 0 || s.dim > MaxDim {
			t.Fatalf("accepted dimension %d", s.dim)
		}
		if want := int64(RecordSize * (1 + len(s.recs))); s.validEnd != want {
			t.Fatalf("validEnd %d, want %d", s.validEnd, want)
		}
		if s.validEnd+s.tail != int64(len(data)) {
			t.Fatalf("validEnd %d + tail %d != %d bytes", s.validEnd, s.tail, len(data))
		}
		for i := 1; i < len(s.recs); i++ {
			if s.recs[i].row <= s.recs[i-1].row {
				t.Fatalf("rows not increasing at record %d", i)
			}
		}
		if (s.tail == 0) != (s.badReason == "") {
			t.Fatalf("tail %d but reason %q", s.tail, s.badReason)
		}
		if s.corrupt() && s.torn() {
			t.Fatal("both torn and corrupt")
		}
		// Every committed record re-encodes to the same bytes.
		var rec [RecordSize]byte
		for i, r := range s.recs {
			putRecord(rec[:], r)
			if string(rec[:]) != string(data[RecordSize*(1+i):RecordSize*(2+i)]) {
				t.Fatalf("record %d does not re-encode to its bytes", i)
			}
		}
	})
}
