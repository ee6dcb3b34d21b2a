package wire

import (
	"math/bits"
	"sync"
)

// Buffers for frames larger than smallFrame, pooled by power-of-two size
// class from 32 KiB up. The pools are shared by every Conn of the process
// (a cache, not state: a buffer is only ever held by the one Conn reading
// into it), so memory follows the frames being read now, not the largest
// frame each connection ever got. Frames above the largest class are
// allocated and left to the collector.
const (
	minPoolShift = 15 // 32 KiB
	maxPoolShift = 26 // 64 MiB
)

var bufPools [maxPoolShift - minPoolShift + 1]sync.Pool

// poolClass returns the class of a buffer of n bytes and whether it has one.
func poolClass(n int) (int, bool) {
	shift := max(bits.Len(uint(n-1)), minPoolShift)
	if shift > maxPoolShift {
		return 0, false
	}
	return shift - minPoolShift, true
}

// getBuf returns a buffer of at least n bytes.
func getBuf(n int) *[]byte {
	cl, ok := poolClass(n)
	if !ok {
		b := make([]byte, n)
		return &b
	}
	if b, ok := bufPools[cl].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 1<<(cl+minPoolShift))
	return &b
}

// putBuf gives b back; b must come from getBuf.
func putBuf(b *[]byte) {
	n := cap(*b)
	cl, ok := poolClass(n)
	if !ok || n != 1<<(cl+minPoolShift) {
		return
	}
	*b = (*b)[:n]
	bufPools[cl].Put(b)
}
