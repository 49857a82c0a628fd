/* Debug mode VIRIDIAN_CHECK_GUEST_WRITES=1: catch host writes into guest RAM that the guest did
 * not grant (docs/worker.md). Guest RAM is a memfd mapped twice: read-write for KVM's memslots
 * and the boot loader, and read-only as the view the devices (hv/, vmbus/, vsp/) reach through
 * gpa_to_hva. In that view the pages the device code grants while the guest lets it write them
 * (rings, the receive buffer, SynIC pages, a request's data-in buffers) are writable; a write
 * anywhere else faults, and the SIGSEGV handler prints the GPA, the host address and a
 * backtrace, then aborts. Granularity: 4 KiB pages.
 *
 * One guarded RAM per process, never unmapped (the view outlives the VM: late grant calls at
 * exit stay valid). Grants are refcounted per page and thread-safe. */
#ifndef VIRIDIAN_WORKER_GUEST_GUARD_H
#define VIRIDIAN_WORKER_GUEST_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* VIRIDIAN_CHECK_GUEST_WRITES=1 is set. */
bool guest_guard_requested(void);
/* Allocate `bytes` of guest RAM (packed as struct guest_layout lays it out) and its guarded
 * view. Returns the read-write mapping, or NULL with a message in err. */
void *guest_guard_map(uint64_t bytes, char *err, size_t errlen);
/* The guarded RAM exists (guest_guard_map succeeded). */
bool guest_guard_active(void);
/* guest_layout_hva() into the view: what the devices get. */
void *guest_guard_hva(uint64_t gpa, uint64_t len);
/* The host starts (on) or stops writing view bytes [hva, hva + len). Every page touched counts
 * once per call; a page is writable while its count is nonzero. Aborts on a range outside the
 * view or a stop without a start: both are bookkeeping bugs. */
void guest_guard_grant(void *hva, uint64_t len, bool on);

#endif
