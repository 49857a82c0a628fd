/* i8042 keyboard controller at ports 0x60 (data) and 0x64 (status/command), with a
 * keyboard that answers its probe commands and an auxiliary port that loops back.
 * It matters for two reasons: Linux probes it at boot (a silent one costs time-outs)
 * and its output port's bit 0 / command 0xFE is the PC's reset line. */
#ifndef VIRIDIAN_DEVICES_I8042_H
#define VIRIDIAN_DEVICES_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/irq.h"

#define I8042_DATA_PORT    0x60
#define I8042_COMMAND_PORT 0x64
#define I8042_KBD_IRQ      1
#define I8042_AUX_IRQ      12
#define I8042_QUEUE        16

struct i8042 {
	pthread_mutex_t lock;
	struct irq_line kbd_irq, aux_irq;
	void (*reset)(void *opaque);  /* the guest pulsed the reset line */
	void *reset_opaque;
	uint8_t mode;                 /* command byte: interrupt enables, port disables */
	uint8_t pending_command;      /* controller command waiting for its data byte */
	uint8_t pending_kbd_command;  /* keyboard command waiting for its parameter */
	uint8_t out_port;
	struct { uint8_t byte; bool aux; } queue[I8042_QUEUE];
	unsigned head, count;
	int kbd_level, aux_level;
};

void i8042_init(struct i8042 *k, const struct irq_line *kbd_irq, const struct irq_line *aux_irq,
		void (*reset)(void *opaque), void *reset_opaque);
void i8042_destroy(struct i8042 *k);
uint8_t i8042_read(struct i8042 *k, uint16_t port);
void i8042_write(struct i8042 *k, uint16_t port, uint8_t value);

/* Saved state: an I8042 section (command byte, pending commands, output port, queue); restore
 * re-raises the interrupt lines as they were. 0 or a negative errno after state_fail(). */
struct state_writer;
struct state_section;
int i8042_save(struct i8042 *k, struct state_writer *w);
int i8042_restore(struct i8042 *k, const struct state_section *sec);

#endif
