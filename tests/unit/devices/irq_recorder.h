/* A recording irq_line for the device tests: the current level of each line and how
 * many times the device changed it. */
#ifndef VIRIDIAN_TESTS_DEVICES_IRQ_RECORDER_H
#define VIRIDIAN_TESTS_DEVICES_IRQ_RECORDER_H

#include <string.h>

#include "devices/irq.h"

#define IRQ_RECORDER_LINES 16

struct irq_recorder {
	int level[IRQ_RECORDER_LINES];
	unsigned changes[IRQ_RECORDER_LINES];  /* set_level calls */
	unsigned calls;
	unsigned bad_irq;                      /* calls for a line number out of range */
};

static inline void irq_recorder_set(void *opaque, uint32_t irq, int level)
{
	struct irq_recorder *r = opaque;
	r->calls++;
	if (irq >= IRQ_RECORDER_LINES) {
		r->bad_irq++;
		return;
	}
	r->level[irq] = level;
	r->changes[irq]++;
}

static inline struct irq_line irq_recorder_line(struct irq_recorder *r, uint32_t irq)
{
	return (struct irq_line){ .set_level = irq_recorder_set, .opaque = r, .irq = irq };
}

#endif
