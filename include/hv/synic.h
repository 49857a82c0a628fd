/* The synthetic interrupt controller of one virtual processor: SCONTROL, SIMP (message
 * page: 16 slots of 256 bytes), SIEFP (event flags), SINT0-15 and EOM. Messages that
 * find their slot busy wait in a per-SINT queue; the slot is marked MessagePending so
 * the guest writes EOM, which redelivers. Thread-safe: the VMBus side posts and signals
 * from its thread while the vCPU thread handles MSRs. */
#ifndef VIRIDIAN_HV_SYNIC_H
#define VIRIDIAN_HV_SYNIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hv/hvdef.h"

#define HV_SYNIC_QUEUE_DEPTH 64   /* pending messages per SINT before posters are refused */

struct hv_platform;

struct hv_synic_queue {
	struct hv_message *msgs;     /* HV_SYNIC_QUEUE_DEPTH slots, allocated on first post */
	unsigned head, count;
};

struct hv_synic {
	pthread_mutex_t lock;
	const struct hv_platform *platform;
	uint32_t vp;
	uint64_t scontrol;
	uint64_t simp;
	uint64_t siefp;
	uint64_t sint[HV_SYNIC_SINT_COUNT];
	struct hv_synic_queue queue[HV_SYNIC_SINT_COUNT];
};

void hv_synic_init(struct hv_synic *s, uint32_t vp, const struct hv_platform *platform);
void hv_synic_destroy(struct hv_synic *s);

bool hv_synic_msr_read(struct hv_synic *s, uint32_t msr, uint64_t *value);
bool hv_synic_msr_write(struct hv_synic *s, uint32_t msr, uint64_t value);

/* Queue a message for `sint`; delivered at once when the slot is free.
 * Returns 0, -1 for bad arguments or no memory, -2 when the queue is full. */
int hv_synic_post(struct hv_synic *s, uint32_t sint, uint32_t message_type,
		  const void *payload, uint32_t len);
/* Set event flag `flag` for `sint`; interrupts the guest if the flag was clear.
 * Returns false if the SIEF page is disabled or the arguments are out of range. */
bool hv_synic_signal_event(struct hv_synic *s, uint32_t sint, uint32_t flag);

/* Saved state, the SynIC's part of a SYNIC section (hv_partition_save/restore frame it):
 * SCONTROL, SIMP, SIEFP, SINT0-15 and each SINT's queued messages. Restore reads the rest of
 * the cursor, which must end with it, checks everything before it changes s, and then
 * grants the pages as the MSR writes do. 0 or a negative errno after state_fail(). */
struct state_writer;
struct state_cursor;
void hv_synic_save(struct hv_synic *s, struct state_writer *w);
int hv_synic_restore(struct hv_synic *s, struct state_cursor *c);

#endif
