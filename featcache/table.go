package featcache

import "hash/maphash"

// keyTable maps Keys to positions in a []record owned by the caller: an
// open-addressing hash table of int32 slots (load factor at most 1/2), so a
// cache of n rows costs about 8n bytes beyond its records instead of a Go
// map's ~60n, and opens without allocating per key. The hash is seeded per
// process (maphash), so crafted image files cannot force probe chains.
type keyTable struct {
	seed  maphash.Seed
	slots []int32 // 1 + index into the records; 0 marks an empty slot
	n     int
}

func newKeyTable(n int) keyTable {
	size := 16
	for size < 2*n {
		size <<= 1
	}
	return keyTable{seed: maphash.MakeSeed(), slots: make([]int32, size)}
}

// find returns the index in recs of the record holding k.
func (t *keyTable) find(recs []record, k *Key) (int, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := maphash.Bytes(t.seed, k[:]) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if recs[s-1].key == *k {
			return int(s - 1), true
		}
	}
}

// add records that recs[idx] holds its key; the key must not be present.
func (t *keyTable) add(recs []record, idx int) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow(recs)
	}
	t.put(&recs[idx].key, idx)
	t.n++
}

func (t *keyTable) put(k *Key, idx int) {
	mask := uint64(len(t.slots) - 1)
	i := maphash.Bytes(t.seed, k[:]) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = int32(idx + 1)
}

// grow doubles the table and re-inserts every entry.
func (t *keyTable) grow(recs []record) {
	old := t.slots
	t.slots = make([]int32, 2*len(old))
	for _, s := range old {
		if s != 0 {
			t.put(&recs[s-1].key, int(s-1))
		}
	}
}
