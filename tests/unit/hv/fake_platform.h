/* A fake VMM for the hv unit tests: malloc'd guest RAM with bounds-checked gpa_to_hva,
 * a settable per-VP guest TSC, a recording inject callback and a recording message sink. */
#ifndef VIRIDIAN_TESTS_HV_FAKE_PLATFORM_H
#define VIRIDIAN_TESTS_HV_FAKE_PLATFORM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv/partition.h"

#define FAKE_RAM_SIZE   (1u << 20)   /* 1 MiB of guest RAM at GPA 0 */
#define FAKE_MAX_INJECT 256
#define FAKE_MAX_POSTS  16

struct fake_inject {
	uint32_t vp;
	uint8_t vector;
};

struct fake_post {
	uint32_t vp;
	struct hv_input_post_message msg;
	const void *ptr;             /* where the partition's copy lived */
};

struct fake_signal {
	uint32_t vp, connection_id;
	uint16_t flag;
};

struct fake {
	uint8_t *ram;
	uint64_t ram_size;
	uint64_t tsc[HV_MAX_VPS];
	uint32_t tsc_calls, last_tsc_vp;
	struct fake_inject injects[FAKE_MAX_INJECT];
	unsigned n_injects;
	struct fake_post posts[FAKE_MAX_POSTS];
	unsigned n_posts;
	struct fake_signal signals[FAKE_MAX_POSTS];
	unsigned n_signals;
	uint16_t post_status, signal_status;  /* what the sink answers */
};

static void *fake_gpa_to_hva(void *opaque, uint64_t gpa, uint64_t len)
{
	struct fake *f = opaque;
	if (gpa > f->ram_size || len > f->ram_size - gpa)
		return NULL;
	return f->ram + gpa;
}

static uint64_t fake_guest_tsc(void *opaque, uint32_t vp)
{
	struct fake *f = opaque;
	f->tsc_calls++;
	f->last_tsc_vp = vp;
	return vp < HV_MAX_VPS ? f->tsc[vp] : 0;
}

static void fake_inject(void *opaque, uint32_t vp, uint8_t vector)
{
	struct fake *f = opaque;
	if (f->n_injects < FAKE_MAX_INJECT)
		f->injects[f->n_injects] = (struct fake_inject){ vp, vector };
	f->n_injects++;
}

static uint16_t fake_post_message(void *opaque, uint32_t vp, const struct hv_input_post_message *msg)
{
	struct fake *f = opaque;
	if (f->n_posts < FAKE_MAX_POSTS) {
		f->posts[f->n_posts].vp = vp;
		f->posts[f->n_posts].msg = *msg;
		f->posts[f->n_posts].ptr = msg;
	}
	f->n_posts++;
	return f->post_status;
}

static uint16_t fake_signal_event(void *opaque, uint32_t vp, uint32_t connection_id, uint16_t flag)
{
	struct fake *f = opaque;
	if (f->n_signals < FAKE_MAX_POSTS)
		f->signals[f->n_signals] = (struct fake_signal){ vp, connection_id, flag };
	f->n_signals++;
	return f->signal_status;
}

static inline void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->ram_size = FAKE_RAM_SIZE;
	f->ram = calloc(1, FAKE_RAM_SIZE);
}

static inline void fake_free(struct fake *f)
{
	free(f->ram);
	f->ram = NULL;
}

static inline struct hv_platform fake_platform(struct fake *f)
{
	return (struct hv_platform){
		.gpa_to_hva = fake_gpa_to_hva,
		.guest_tsc = fake_guest_tsc,
		.inject = fake_inject,
		.opaque = f,
	};
}

static inline struct hv_message_sink fake_sink(struct fake *f)
{
	return (struct hv_message_sink){
		.post_message = fake_post_message,
		.signal_event = fake_signal_event,
		.opaque = f,
	};
}

#endif
