//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/nblpipe/nblpipe/inject"
	"github.com/nblpipe/nblpipe/internal/scenario"
	"github.com/nblpipe/nblpipe/nbl"
	"github.com/nblpipe/nblpipe/vswitch"
)

// Callout names, as -callout takes them.
const (
	calloutNone     = "none"
	calloutCount    = "count"
	calloutReinject = "reinject"
	calloutInspect  = "inspect"
)

var callouts = []string{calloutNone, calloutCount, calloutReinject, calloutInspect}

// counter is an atomic counter alone on its cache line, so that workers
// counting different things do not share a line.
type counter struct {
	atomic.Uint64
	_ [56]byte
}

// countCallout permits every frame and counts frames and bytes per layer.
// It has a filter at the ingress and at the egress layer.
type countCallout struct {
	frames, bytes [2]counter // [0] ingress, [1] egress
}

func (c *countCallout) classify(in *vswitch.IncomingValues, _ *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	i := 0
	if in.LayerID == vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET {
		i = 1
	}
	c.frames[i].Add(1)
	c.bytes[i].Add(uint64(l.FirstNetBuffer().DataLength()))
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE != 0 {
		out.ActionType = vswitch.FWP_ACTION_PERMIT
	}
}

// cloneCallout is the inspect pattern written against the WFP-named API,
// as a callout driver being ported would have it: at the ingress layer it
// clones every frame it did not inject (FwpsAllocateCloneNetBufferList0,
// from a pool of its own), injects the clone with
// FwpsInjectvSwitchEthernetIngressAsync0 and absorbs the original; the
// clone comes back tagged, FwpsQueryPacketInjectionState0 says
// FWPS_PACKET_INJECTED_BY_SELF, and it passes. The completion frees the
// clone and drops the reference on the original, which then goes back to
// its port. A frame it cannot clone or inject is blocked (the switch counts
// it as callout-block), never lost.
type cloneCallout struct {
	h          *inject.Handle
	swID       []byte
	pool       *nbl.Pool
	completeFn inject.FWPS_INJECT_COMPLETE0

	cloned, completed, cloneFailed, injectFailed counter
}

func newCloneCallout(h *inject.Handle, swID inject.GUID, poolSize int) (*cloneCallout, error) {
	p, err := nbl.NewPool(nbl.Config{NBLs: poolSize, NoFrames: true})
	if err != nil {
		return nil, err
	}
	c := &cloneCallout{h: h, swID: swID.Bytes(), pool: p}
	c.completeFn = c.complete // a method value made once: passing it does not allocate
	return c, nil
}

func (c *cloneCallout) classify(_ *vswitch.IncomingValues, meta *vswitch.Metadata, l *nbl.NetBufferList, _ any, _ *vswitch.Filter, _ uint64, out *vswitch.ClassifyOut) {
	if inject.FwpsQueryPacketInjectionState0(c.h, l, nil) == inject.FWPS_PACKET_INJECTED_BY_SELF {
		out.ActionType = vswitch.FWP_ACTION_PERMIT
		return
	}
	if out.Rights&vswitch.FWPS_RIGHT_ACTION_WRITE == 0 {
		return // nothing may be absorbed without the write right
	}
	var cl *nbl.NetBufferList
	if st := inject.FwpsAllocateCloneNetBufferList0(l, c.pool, nil, 0, &cl); st != inject.STATUS_SUCCESS {
		c.cloneFailed.Add(1)
		out.ActionType = vswitch.FWP_ACTION_BLOCK
		return
	}
	inject.FwpsReferenceNetBufferList0(l, false)
	st := inject.FwpsInjectvSwitchEthernetIngressAsync0(c.h, nil, 0, 0, c.swID,
		inject.NDIS_SWITCH_PORT_ID(meta.VSwitchSourcePortID), inject.NDIS_SWITCH_NIC_INDEX(meta.VSwitchSourceNicIndex),
		cl, c.completeFn, l)
	if st != inject.STATUS_SUCCESS {
		// The clone is still ours (no completion will run): free it and
		// drop the reference, and block the original.
		inject.FwpsFreeCloneNetBufferList0(cl, 0)
		inject.FwpsDereferenceNetBufferList0(l, false)
		c.injectFailed.Add(1)
		out.ActionType = vswitch.FWP_ACTION_BLOCK
		return
	}
	c.cloned.Add(1)
	out.ActionType = vswitch.FWP_ACTION_BLOCK
	out.Flags |= vswitch.FWPS_CLASSIFY_OUT_FLAG_ABSORB
	out.Rights &^= vswitch.FWPS_RIGHT_ACTION_WRITE
}

// complete runs once per injected clone, in the switch's completion batch:
// the original is the completion context.
func (c *cloneCallout) complete(context any, cl *nbl.NetBufferList, _ bool) {
	orig, _ := context.(*nbl.NetBufferList)
	inject.FwpsFreeCloneNetBufferList0(cl, 0)
	if orig != nil {
		inject.FwpsDereferenceNetBufferList0(orig, false)
	}
	c.completed.Add(1)
}

// calloutStats are the callout's counters in the statistics.
type calloutStats struct {
	Name string `json:"name"`
	// count
	IngressFrames uint64 `json:"ingress_frames,omitempty"`
	IngressBytes  uint64 `json:"ingress_bytes,omitempty"`
	EgressFrames  uint64 `json:"egress_frames,omitempty"`
	EgressBytes   uint64 `json:"egress_bytes,omitempty"`
	// reinject and inspect
	Injected     uint64 `json:"injected,omitempty"`
	Completed    uint64 `json:"completed,omitempty"`
	Failed       uint64 `json:"failed,omitempty"`
	CloneFailed  uint64 `json:"clone_failed,omitempty"`
	ClonesHeld   int    `json:"clones_held,omitempty"`
	HandlePend   int64  `json:"injections_pending"`
	HandleRefuse uint64 `json:"injections_refused,omitempty"`
}

// calloutSet is the callout the daemon runs, set up on a switch.
type calloutSet struct {
	name     string
	handle   *inject.Handle
	count    *countCallout
	reinject *scenario.Callout
	clone    *cloneCallout
}

// setupCallout registers the named callout with sw and adds its filters.
// It must run before sw starts.
func setupCallout(sw *vswitch.Switch, st *inject.Stack, name string) (*calloutSet, error) {
	cs := &calloutSet{name: name}
	addFilter := func(key string, layer uint16, callout string) error {
		_, err := sw.AddFilter(&vswitch.Filter{Key: key, LayerID: layer, Action: vswitch.FWP_ACTION_CALLOUT_TERMINATING, CalloutKey: callout})
		return err
	}
	newHandle := func() error {
		h, err := st.CreateHandle(inject.AF_UNSPEC, inject.FWPS_INJECTION_TYPE_L2)
		cs.handle = h
		return err
	}
	switch name {
	case calloutNone:
		return cs, nil
	case calloutCount:
		cs.count = &countCallout{}
		if err := sw.RegisterCallout(&vswitch.Callout{Key: "count", Classify: cs.count.classify}); err != nil {
			return nil, err
		}
		if err := addFilter("count-ingress", vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, "count"); err != nil {
			return nil, err
		}
		if err := addFilter("count-egress", vswitch.FWPS_LAYER_EGRESS_VSWITCH_ETHERNET, "count"); err != nil {
			return nil, err
		}
		return cs, nil
	case calloutReinject:
		if err := newHandle(); err != nil {
			return nil, err
		}
		cs.reinject = &scenario.Callout{Handle: cs.handle, VSwitchID: sw.ID().Bytes()}
		if err := sw.RegisterCallout(cs.reinject.VSwitchCallout("reinject")); err != nil {
			return nil, errors.Join(err, cs.handle.Destroy())
		}
		if err := addFilter("reinject-all", vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, "reinject"); err != nil {
			return nil, errors.Join(err, cs.handle.Destroy())
		}
		return cs, nil
	case calloutInspect:
		if err := newHandle(); err != nil {
			return nil, err
		}
		c, err := newCloneCallout(cs.handle, sw.ID(), 8192)
		if err != nil {
			return nil, errors.Join(err, cs.handle.Destroy())
		}
		cs.clone = c
		if err := sw.RegisterCallout(&vswitch.Callout{Key: "clone", Classify: c.classify, InjectionHandle: cs.handle}); err != nil {
			return nil, errors.Join(err, cs.handle.Destroy(), c.pool.Close())
		}
		if err := addFilter("clone-all", vswitch.FWPS_LAYER_INGRESS_VSWITCH_ETHERNET, "clone"); err != nil {
			return nil, errors.Join(err, cs.handle.Destroy(), c.pool.Close())
		}
		return cs, nil
	}
	return nil, fmt.Errorf("unknown callout %q (want one of %v)", name, callouts)
}

// stats reads the callout's counters.
func (cs *calloutSet) stats() calloutStats {
	s := calloutStats{Name: cs.name}
	if cs.handle != nil {
		hs := cs.handle.Stats()
		s.HandlePend, s.HandleRefuse = hs.Pending, hs.Refused
		s.Injected, s.Completed = hs.Injected, hs.Completed
	}
	switch {
	case cs.count != nil:
		s.IngressFrames, s.IngressBytes = cs.count.frames[0].Load(), cs.count.bytes[0].Load()
		s.EgressFrames, s.EgressBytes = cs.count.frames[1].Load(), cs.count.bytes[1].Load()
	case cs.reinject != nil:
		s.Failed = cs.reinject.Failed.Load()
	case cs.clone != nil:
		s.Failed = cs.clone.injectFailed.Load()
		s.CloneFailed = cs.clone.cloneFailed.Load()
		s.ClonesHeld = cs.clone.pool.InUse()
	}
	return s
}

// inFlight is the number of injections not yet completed.
func (cs *calloutSet) inFlight() int64 {
	if cs.handle == nil {
		return 0
	}
	return cs.handle.Stats().Pending
}

// close destroys the injection handle (waiting for its injections, which
// the closed switch has completed) and checks the clone pool is whole.
// Call it after the switch closed.
func (cs *calloutSet) close(ctx context.Context) error {
	var errs []error
	if cs.handle != nil {
		errs = append(errs, cs.handle.DestroyContext(ctx))
	}
	if cs.clone != nil {
		if !cs.clone.pool.Full() {
			errs = append(errs, fmt.Errorf("clone callout: %d clones not freed", cs.clone.pool.InUse()))
		} else {
			errs = append(errs, cs.clone.pool.Close())
		}
	}
	return errors.Join(errs...)
}
