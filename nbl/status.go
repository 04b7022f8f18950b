package nbl

import (
	"errors"
	"fmt"
)

// Status is an NTSTATUS-style code, as NDIS_STATUS and the WFP functions
// return them: 0 is success, values with the top two bits set (0xC0000000)
// are errors, and values with only the top bit set are warnings. Status
// implements error; Success is not meant to be used as an error value.
//
// Returning a Status never allocates. Converting a Status to error boxes it,
// so the idiomatic API returns the preallocated Err* variables instead, which
// compare equal (errors.Is) to the Status they hold.
type Status uint32

// NDIS status codes used by the NBL helpers (ndis/status.h, ntstatus.h).
const (
	StatusSuccess              Status = 0x00000000 // NDIS_STATUS_SUCCESS, STATUS_SUCCESS
	StatusPending              Status = 0x00000103 // NDIS_STATUS_PENDING
	StatusFailure              Status = 0xC0000001 // NDIS_STATUS_FAILURE, STATUS_UNSUCCESSFUL
	StatusInvalidParameter     Status = 0xC000000D // STATUS_INVALID_PARAMETER
	StatusResources            Status = 0xC000009A // NDIS_STATUS_RESOURCES, STATUS_INSUFFICIENT_RESOURCES
	StatusBufferOverflow       Status = 0x80000005 // NDIS_STATUS_BUFFER_OVERFLOW (a warning)
	StatusInvalidBufferSize    Status = 0xC0000206 // STATUS_INVALID_BUFFER_SIZE (oversize packet)
	StatusRequestAborted       Status = 0xC0000240 // STATUS_REQUEST_ABORTED (NDIS_STATUS_REQUEST_ABORTED)
	StatusInvalidDeviceState   Status = 0xC0000184 // STATUS_INVALID_DEVICE_STATE
	StatusObjectNameNotFound   Status = 0xC0000034 // STATUS_OBJECT_NAME_NOT_FOUND
	StatusDeviceNotReady       Status = 0xC00000A3 // STATUS_DEVICE_NOT_READY
	StatusInvalidHandle        Status = 0xC0000008 // STATUS_INVALID_HANDLE
	StatusNotSupported         Status = 0xC00000BB // STATUS_NOT_SUPPORTED
	StatusBufferTooSmall       Status = 0xC0000023 // STATUS_BUFFER_TOO_SMALL
	StatusDataNotAccepted      Status = 0xC000021B // STATUS_DATA_NOT_ACCEPTED
	StatusInvalidAddress       Status = 0xC0000141 // STATUS_INVALID_ADDRESS
	StatusConnectionAborted    Status = 0xC0000241 // STATUS_CONNECTION_ABORTED
	StatusNoMemory             Status = 0xC0000017 // STATUS_NO_MEMORY
	StatusInternalError        Status = 0xC00000E5 // STATUS_INTERNAL_ERROR
	StatusHopLimitExceeded     Status = 0xC000A012 // STATUS_HOPLIMIT_EXCEEDED
	StatusInvalidDeviceRequest Status = 0xC0000010 // STATUS_INVALID_DEVICE_REQUEST
)

// NT_SUCCESS reports whether s is a success or informational code (the
// NT_SUCCESS macro: the value, read as a signed 32-bit number, is not
// negative).
func NT_SUCCESS(s Status) bool { return int32(s) >= 0 }

// OK reports whether s is a success or informational code.
func (s Status) OK() bool { return int32(s) >= 0 }

var statusNames = map[Status]string{}

// RegisterStatusName lets other packages (inject) name their codes in
// Status.Error. Call it from package initialisation only.
func RegisterStatusName(s Status, name string) { statusNames[s] = name }

func init() {
	for s, n := range map[Status]string{
		StatusSuccess:              "STATUS_SUCCESS",
		StatusPending:              "STATUS_PENDING",
		StatusFailure:              "NDIS_STATUS_FAILURE",
		StatusInvalidParameter:     "STATUS_INVALID_PARAMETER",
		StatusResources:            "NDIS_STATUS_RESOURCES",
		StatusBufferOverflow:       "NDIS_STATUS_BUFFER_OVERFLOW",
		StatusInvalidBufferSize:    "STATUS_INVALID_BUFFER_SIZE",
		StatusRequestAborted:       "STATUS_REQUEST_ABORTED",
		StatusInvalidDeviceState:   "STATUS_INVALID_DEVICE_STATE",
		StatusObjectNameNotFound:   "STATUS_OBJECT_NAME_NOT_FOUND",
		StatusDeviceNotReady:       "STATUS_DEVICE_NOT_READY",
		StatusInvalidHandle:        "STATUS_INVALID_HANDLE",
		StatusNotSupported:         "STATUS_NOT_SUPPORTED",
		StatusBufferTooSmall:       "STATUS_BUFFER_TOO_SMALL",
		StatusDataNotAccepted:      "STATUS_DATA_NOT_ACCEPTED",
		StatusInvalidAddress:       "STATUS_INVALID_ADDRESS",
		StatusConnectionAborted:    "STATUS_CONNECTION_ABORTED",
		StatusNoMemory:             "STATUS_NO_MEMORY",
		StatusInternalError:        "STATUS_INTERNAL_ERROR",
		StatusHopLimitExceeded:     "STATUS_HOPLIMIT_EXCEEDED",
		StatusInvalidDeviceRequest: "STATUS_INVALID_DEVICE_REQUEST",
	} {
		statusNames[s] = n
	}
}

// Error returns the code's C name and value, e.g.
// "NDIS_STATUS_RESOURCES (0xC000009A)".
func (s Status) Error() string {
	if n, ok := statusNames[s]; ok {
		return fmt.Sprintf("%s (0x%08X)", n, uint32(s))
	}
	return fmt.Sprintf("status 0x%08X", uint32(s))
}

// String is Error.
func (s Status) String() string { return s.Error() }

// Preallocated errors for the idiomatic API; each holds the Status of the
// same name, so errors.Is(err, nbl.StatusResources) is true for
// ErrResources.
var (
	ErrResources        error = StatusResources        // a pool is exhausted or a request exceeds its fixed sizes
	ErrInvalidParameter error = StatusInvalidParameter // an argument breaks the function's rules
	ErrBufferTooSmall   error = StatusBufferTooSmall   // the destination is smaller than the data
)

// StatusOf returns the Status an error of this module carries:
// StatusSuccess for nil, the code for a Status or an error wrapping one,
// and StatusFailure for any other error.
func StatusOf(err error) Status { return toStatus(err) }

func asStatus(err error, s *Status) bool { return errors.As(err, s) }
