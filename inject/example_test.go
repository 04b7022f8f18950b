package inject_test

import (
	"fmt"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/nbl"
)

// tinySwitch is the smallest VSwitchTarget: it takes every injected chain
// and completes it at once into its worker's completion queue.
type tinySwitch struct {
	id inject.GUID
	q  *inject.CompletionQueue
}

func (s *tinySwitch) VSwitchID() inject.GUID { return s.id }

func (s *tinySwitch) InjectIngress(nbls *nbl.NetBufferList, count int, sourcePortID uint32, sourceNicIndex uint16) {
	fmt.Printf("switch: %d NBL from port %d, NIC %d\n", count, sourcePortID, sourceNicIndex)
	s.q.CompleteChain(nbls, inject.STATUS_SUCCESS)
}

// Example injects a clone of a packet into a virtual switch's ingress path
// and frees the clone in the completion function, the way a callout driver
// re-injects a packet it has inspected.
func Example() {
	stack := inject.NewStack()
	stack.Start()

	h, err := stack.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
	if err != nil {
		fmt.Println(err)
		return
	}

	id, _ := inject.ParseGUID("{6b29fc40-ca47-1067-b31d-00dd010662da}")
	q, _ := inject.NewCompletionQueue(stack, 32)
	if err := stack.RegisterVSwitch(&tinySwitch{id: id, q: q}); err != nil {
		fmt.Println(err)
		return
	}

	pool, _ := nbl.NewPool(nbl.Config{NBLs: 8})
	defer pool.Close()
	orig, _ := pool.Allocate(0, 60)
	clone, _ := pool.Clone(orig)

	freeClone := func(context any, l *nbl.NetBufferList, dispatchLevel bool) {
		fmt.Printf("completion: %v, context %v\n", l.Status, context)
		if err := pool.FreeClone(l); err != nil {
			fmt.Println(err)
		}
	}
	injectionContext := "inspect"
	err = h.InjectVSwitchIngress(id.Bytes(), 3, 1, clone, &injectionContext, inject.Done{Fn: freeClone, Context: "pended packet 1"})
	if err != nil {
		fmt.Println("inject:", err) // the clone is still ours: free it
		pool.FreeClone(clone)
	}

	// Reclassified on the way in: the callout recognises its own packet.
	state, ctx := h.QueryState(clone)
	fmt.Println(state, *ctx.(*string))

	q.Flush() // end of the worker's burst: completions run
	fmt.Println("clones of the original:", orig.ChildRefCount())

	if err := h.Destroy(); err != nil {
		fmt.Println(err)
	}
	pool.Free(orig)
	fmt.Println("pool full:", pool.Full())

	// Output:
	// switch: 1 NBL from port 3, NIC 1
	// FWPS_PACKET_INJECTED_BY_SELF inspect
	// completion: STATUS_SUCCESS (0x00000000), context pended packet 1
	// clones of the original: 0
	// pool full: true
}
