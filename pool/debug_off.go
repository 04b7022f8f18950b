//go:build !nblpipe_debug

package pool

// debugEnabled is false without the nblpipe_debug build tag; the compiler
// removes every check guarded by it.
const debugEnabled = false

type debugState struct{}

func newDebugState(int) *debugState { return nil }
func (*debugState) get(int)         {}
func (*debugState) put(int)         {}
