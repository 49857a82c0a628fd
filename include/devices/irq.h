/* How an emulated device drives its interrupt line: the worker routes it to the
 * in-kernel PIC/IOAPIC. ISA lines are level-modelled: the device says high or low. */
#ifndef VIRIDIAN_DEVICES_IRQ_H
#define VIRIDIAN_DEVICES_IRQ_H

#include <stdint.h>

struct irq_line {
	void (*set_level)(void *opaque, uint32_t irq, int level);
	void *opaque;
	uint32_t irq;
};

static inline void irq_line_set(const struct irq_line *line, int level)
{
	if (line->set_level)
		line->set_level(line->opaque, line->irq, level);
}

#endif
