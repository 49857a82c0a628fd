/* Save/restore round trips for the VSP tests and fuzzers: a fake guest's whole VMBus server and
 * RAM into a state file (a memfd), and that file restored onto another fake guest whose server
 * has the same devices, optionally with one device section's payload replaced. */
#ifndef STATE_RT_H
#define STATE_RT_H

#include <stddef.h>
#include <stdint.h>

#include "fake_guest.h"

/* The file (read position 0), or -1 with *rc the failure of vmbus_server_save. */
int rt_save(struct fake_guest *g, int *rc);
/* One device section changed on the way in: its version (unless < 0) and payload (if set). */
struct rt_patch {
	uint32_t type, instance;
	int version;
	const uint8_t *payload;
	size_t len;
};
/* RAM, the VMBUS section, each device section (patched by p unless NULL), then
 * vmbus_server_restore_finish. 0, or the first error. */
int rt_restore(struct fake_guest *g, int fd, const struct rt_patch *p);
/* A malloc'd copy of the payload of section type/instance (NULL when there is none). */
uint8_t *rt_payload(int fd, uint32_t type, uint32_t instance, size_t *len);

#endif
