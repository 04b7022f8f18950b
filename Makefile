# nblpipe: the two commands a fresh machine needs are `make bench` (the main
# job) and `make test` (the test suite). Both need only Go.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go

.PHONY: all test vet fmt-check test-race test-debug bench bench-smoke gobench fuzz soak nblswitch pgo

all: test

## test: vet, gofmt check, the race-enabled suite, and the debug-tag suite.
test: vet fmt-check test-race test-debug

vet:
	$(GO) vet ./...
	$(GO) vet -tags nblpipe_debug ./...

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change these files:"; echo "$$out"; exit 1; fi

test-race:
	$(GO) test -race -count=1 -timeout 5m ./...

# The nblpipe_debug tag turns misuse (double free, foreign objects) into
# panics; its own tests run only with the tag.
test-debug:
	$(GO) test -count=1 -timeout 5m -tags nblpipe_debug ./...

## bench: the main job, the benchmark program on in-memory data (no root).
bench:
	$(GO) run ./bench $(BENCHFLAGS)

## pgo: profile the in-memory pipeline (one and two workers, 64-byte
## frames, each scenario 2 s) with a build made without PGO, and write the
## merged CPU profile as default.pgo of bench and cmd/nblswitch, which
## `go build`, `go run` and `go test` of those two main packages then use
## (profile-guided optimization). Run it again after changing a hot path.
PGO_SCENARIOS ?= ^pipeline/(forward|inspect|clone-reinject|block)/
pgo:
	@set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	$(GO) build -pgo=off -o "$$d/bench" ./bench; \
	for w in 1 2; do \
		"$$d/bench" -no-micro -burst 32 -size 64 -workers $$w -duration 2s \
			-scenario '$(PGO_SCENARIOS)' -cpuprofile "$$d/w$$w.prof" > /dev/null; \
	done; \
	$(GO) tool pprof -proto "$$d/w1.prof" "$$d/w2.prof" > "$$d/merged.pgo"; \
	cp "$$d/merged.pgo" bench/default.pgo; cp "$$d/merged.pgo" cmd/nblswitch/default.pgo; \
	echo "wrote bench/default.pgo and cmd/nblswitch/default.pgo"

## bench-smoke: the benchmark program with very short runs (CI checks it works).
bench-smoke:
	$(GO) run ./bench -duration 20ms -json > /dev/null

## gobench: every `go test` benchmark once, as a smoke test; raise
## BENCHTIME (and add -count) to compare commits with benchstat.
BENCHTIME ?= 1x
gobench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

## soak: the soak test for SOAK (default 60s): four ports, two workers,
## callouts that permit, block, reinject, clone and hold at random, handles
## replaced and filters changed under traffic, every frame accounted for.
SOAK ?= 60s
soak:
	NBLPIPE_SOAK=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 0 ./vswitch

## fuzz: each fuzz target for FUZZTIME (their seed corpora run in `make test`).
FUZZTIME ?= 30s
FUZZMIN ?= 1x
FUZZ_TARGETS = \
	./ring:FuzzRingOps \
	./nbl:FuzzNBLOps \
	./inject:FuzzParseGUID ./inject:FuzzCreateHandle ./inject:FuzzChainShape ./inject:FuzzWFPCalls \
	./vswitch:FuzzClassify \
	./vswitch/pcapport:FuzzPcapReader \
	./vswitch/afxdp:FuzzFixPartialChecksum \
	./cmd/nblswitch:FuzzParseVLAN ./cmd/nblswitch:FuzzParseStatus ./cmd/nblswitch:FuzzParseFlags ./cmd/nblswitch:FuzzXDPAttachedAttr
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) $$pkg; \
	done

## nblswitch: the daemon, built without cgo (it drops capabilities on
## every thread, which a cgo build cannot do).
nblswitch:
	CGO_ENABLED=0 $(GO) build -o bin/nblswitch ./cmd/nblswitch
