package inject

import "github.com/nblpipe/nblpipe/nbl"

// Status is the NTSTATUS-style code the WFP-named functions return and that
// completed NBLs carry; it is nbl.Status, so the NDIS and FWP codes share one
// type. It implements error; returning one never allocates.
type Status = nbl.Status

// NTSTATUS codes of the injection functions (ntstatus.h).
const (
	STATUS_SUCCESS                   Status = 0x00000000
	STATUS_PENDING                   Status = 0x00000103
	STATUS_UNSUCCESSFUL              Status = 0xC0000001
	STATUS_INVALID_PARAMETER         Status = 0xC000000D
	STATUS_INSUFFICIENT_RESOURCES    Status = 0xC000009A
	STATUS_INVALID_BUFFER_SIZE       Status = 0xC0000206
	STATUS_INVALID_DEVICE_STATE      Status = 0xC0000184
	STATUS_NOT_FOUND                 Status = 0xC0000225
	STATUS_INVALID_MEMBER            Status = 0xC000017B
	STATUS_HOPLIMIT_EXCEEDED         Status = 0xC000A012
	STATUS_REQUEST_ABORTED           Status = 0xC0000240
	STATUS_FWP_NULL_POINTER          Status = 0xC022001C
	STATUS_FWP_INVALID_PARAMETER     Status = 0xC0220035
	STATUS_FWP_TCPIP_NOT_READY       Status = 0xC0220100
	STATUS_FWP_INJECT_HANDLE_CLOSING Status = 0xC0220101
	STATUS_FWP_INJECT_HANDLE_STALE   Status = 0xC0220102
	STATUS_FWP_CANNOT_PEND           Status = 0xC0220103
	STATUS_FWP_DROP_NOICMP           Status = 0xC0220104
	NDIS_STATUS_SUCCESS              Status = 0x00000000
	NDIS_STATUS_RESOURCES            Status = 0xC000009A
	NDIS_STATUS_FAILURE              Status = 0xC0000001
	NDIS_STATUS_PAUSED               Status = 0xC023002A
	NDIS_STATUS_REQUEST_ABORTED      Status = 0xC0000240
	NDIS_STATUS_INVALID_PACKET       Status = 0xC001000F
	NDIS_STATUS_INVALID_LENGTH       Status = 0xC0010014
	NDIS_STATUS_ADAPTER_NOT_READY    Status = 0xC0010011
)

func init() {
	for s, n := range map[Status]string{
		STATUS_NOT_FOUND:                 "STATUS_NOT_FOUND",
		STATUS_INVALID_MEMBER:            "STATUS_INVALID_MEMBER",
		STATUS_FWP_NULL_POINTER:          "STATUS_FWP_NULL_POINTER",
		STATUS_FWP_INVALID_PARAMETER:     "STATUS_FWP_INVALID_PARAMETER",
		STATUS_FWP_TCPIP_NOT_READY:       "STATUS_FWP_TCPIP_NOT_READY",
		STATUS_FWP_INJECT_HANDLE_CLOSING: "STATUS_FWP_INJECT_HANDLE_CLOSING",
		STATUS_FWP_INJECT_HANDLE_STALE:   "STATUS_FWP_INJECT_HANDLE_STALE",
		STATUS_FWP_CANNOT_PEND:           "STATUS_FWP_CANNOT_PEND",
		STATUS_FWP_DROP_NOICMP:           "STATUS_FWP_DROP_NOICMP",
		NDIS_STATUS_PAUSED:               "NDIS_STATUS_PAUSED",
		NDIS_STATUS_INVALID_PACKET:       "NDIS_STATUS_INVALID_PACKET",
		NDIS_STATUS_INVALID_LENGTH:       "NDIS_STATUS_INVALID_LENGTH",
		NDIS_STATUS_ADAPTER_NOT_READY:    "NDIS_STATUS_ADAPTER_NOT_READY",
	} {
		nbl.RegisterStatusName(s, n)
	}
}

// NT_SUCCESS reports whether s is a success or informational code.
func NT_SUCCESS(s Status) bool { return nbl.NT_SUCCESS(s) }

// Preallocated errors of the idiomatic API; each is the Status of the same
// meaning, so errors.Is(err, inject.STATUS_FWP_INJECT_HANDLE_CLOSING) works.
var (
	ErrNotReady         error = STATUS_FWP_TCPIP_NOT_READY       // the stack is not started, or no data path serves the request
	ErrHandleClosing    error = STATUS_FWP_INJECT_HANDLE_CLOSING // the handle is being destroyed
	ErrHandleStale      error = STATUS_FWP_INJECT_HANDLE_STALE   // the handle lacks the injection type the call needs
	ErrInvalidParameter error = STATUS_INVALID_PARAMETER
	ErrNullPointer      error = STATUS_FWP_NULL_POINTER
	ErrNotFound         error = STATUS_NOT_FOUND // no target with that vSwitch ID
)
