/* i8042 controller with a minimal PS/2 keyboard behind it. */
#include <string.h>

#include "devices/i8042.h"
#include "section.h"

/* Status register bits */
#define STATUS_OBF      0x01 /* output buffer full */
#define STATUS_SYS      0x04 /* system flag: self-test passed */
#define STATUS_CMD      0x08 /* last write was to the command port */
#define STATUS_AUX_DATA 0x20 /* output buffer holds auxiliary-port data */

/* Command byte (mode) bits */
#define MODE_KBD_INT  0x01
#define MODE_AUX_INT  0x02
#define MODE_SYS      0x04
#define MODE_DISABLE_KBD 0x10
#define MODE_DISABLE_AUX 0x20
#define MODE_XLATE    0x40

/* Controller commands */
#define CMD_READ_MODE    0x20
#define CMD_WRITE_MODE   0x60
#define CMD_AUX_DISABLE  0xA7
#define CMD_AUX_ENABLE   0xA8
#define CMD_AUX_TEST     0xA9
#define CMD_SELF_TEST    0xAA
#define CMD_KBD_TEST     0xAB
#define CMD_KBD_DISABLE  0xAD
#define CMD_KBD_ENABLE   0xAE
#define CMD_READ_OUTPORT 0xD0
#define CMD_WRITE_OUTPORT 0xD1
#define CMD_KBD_LOOP     0xD2
#define CMD_AUX_LOOP     0xD3
#define CMD_AUX_SEND     0xD4
#define CMD_PULSE_RESET  0xFE

/* Keyboard commands and replies */
#define KBD_SET_LEDS   0xED
#define KBD_ECHO       0xEE
#define KBD_SCANCODE   0xF0
#define KBD_GET_ID     0xF2
#define KBD_SET_RATE   0xF3
#define KBD_ENABLE     0xF4
#define KBD_RESET_DIS  0xF5
#define KBD_RESET_EN   0xF6
#define KBD_RESET      0xFF
#define KBD_ACK        0xFA
#define KBD_BAT_OK     0xAA
#define KBD_RESEND     0xFE

#define OUTPORT_RESET_HIGH 0x01 /* bit 0 low holds the CPU in reset */
#define SELF_TEST_OK 0x55

void i8042_init(struct i8042 *k, const struct irq_line *kbd_irq, const struct irq_line *aux_irq,
		void (*reset)(void *opaque), void *reset_opaque)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->kbd_irq = *kbd_irq;
	k->aux_irq = *aux_irq;
	k->reset = reset;
	k->reset_opaque = reset_opaque;
	k->mode = MODE_KBD_INT | MODE_SYS | MODE_XLATE;
	k->out_port = OUTPORT_RESET_HIGH;
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* The line of the byte at the head of the queue is high while interrupts for it are on. */
static void irqs_wanted(const struct i8042 *k, int *kbd, int *aux)
{
	*kbd = *aux = 0;
	if (k->count) {
		if (k->queue[k->head].aux)
			*aux = !!(k->mode & MODE_AUX_INT);
		else
			*kbd = !!(k->mode & MODE_KBD_INT);
	}
}

static void update_irqs(struct i8042 *k)
{
	int kbd, aux;
	irqs_wanted(k, &kbd, &aux);
	if (kbd != k->kbd_level)
		irq_line_set(&k->kbd_irq, k->kbd_level = kbd);
	if (aux != k->aux_level)
		irq_line_set(&k->aux_irq, k->aux_level = aux);
}

static void push(struct i8042 *k, uint8_t byte, bool aux)
{
	if (k->count == I8042_QUEUE)
		return;
	unsigned slot = (k->head + k->count) % I8042_QUEUE;
	k->queue[slot].byte = byte;
	k->queue[slot].aux = aux;
	k->count++;
}

static void keyboard_command(struct i8042 *k, uint8_t value)
{
	if (k->pending_kbd_command) { /* parameter of LEDs / rate / scancode set */
		uint8_t cmd = k->pending_kbd_command;
		k->pending_kbd_command = 0;
		push(k, KBD_ACK, false);
		if (cmd == KBD_SCANCODE && value == 0)
			push(k, 2, false); /* current set: 2 */
		return;
	}
	switch (value) {
	case KBD_SET_LEDS:
	case KBD_SET_RATE:
	case KBD_SCANCODE:
		k->pending_kbd_command = value;
		push(k, KBD_ACK, false);
		break;
	case KBD_ECHO: push(k, KBD_ECHO, false); break;
	case KBD_GET_ID:
		push(k, KBD_ACK, false);
		push(k, 0xAB, false);
		push(k, 0x83, false); /* MF2 keyboard */
		break;
	case KBD_RESET:
		push(k, KBD_ACK, false);
		push(k, KBD_BAT_OK, false);
		break;
	case KBD_ENABLE:
	case KBD_RESET_DIS:
	case KBD_RESET_EN:
		push(k, KBD_ACK, false);
		break;
	default:
		push(k, KBD_RESEND, false);
	}
}

static void controller_data(struct i8042 *k, uint8_t cmd, uint8_t value)
{
	switch (cmd) {
	case CMD_WRITE_MODE: k->mode = value; break;
	case CMD_WRITE_OUTPORT:
		k->out_port = value;
		if (!(value & OUTPORT_RESET_HIGH) && k->reset)
			k->reset(k->reset_opaque);
		break;
	case CMD_KBD_LOOP: push(k, value, false); break;
	case CMD_AUX_LOOP: push(k, value, true); break;
	case CMD_AUX_SEND: break; /* no mouse: the byte goes nowhere and nothing answers */
	}
}

static void controller_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_MODE: push(k, k->mode, false); break;
	case CMD_WRITE_MODE:
	case CMD_WRITE_OUTPORT:
	case CMD_KBD_LOOP:
	case CMD_AUX_LOOP:
	case CMD_AUX_SEND:
		k->pending_command = cmd;
		break;
	case CMD_AUX_DISABLE: k->mode |= MODE_DISABLE_AUX; break;
	case CMD_AUX_ENABLE: k->mode &= ~MODE_DISABLE_AUX; break;
	case CMD_KBD_DISABLE: k->mode |= MODE_DISABLE_KBD; break;
	case CMD_KBD_ENABLE: k->mode &= ~MODE_DISABLE_KBD; break;
	case CMD_AUX_TEST:
	case CMD_KBD_TEST:
		push(k, 0x00, false); /* interface test passed */
		break;
	case CMD_SELF_TEST: push(k, SELF_TEST_OK, false); break;
	case CMD_READ_OUTPORT: push(k, k->out_port, false); break;
	case CMD_PULSE_RESET:
		if (k->reset)
			k->reset(k->reset_opaque);
		break;
	default:
		if ((cmd & 0xF0) == 0xF0 && !(cmd & OUTPORT_RESET_HIGH) && k->reset)
			k->reset(k->reset_opaque); /* pulse output lines: bit 0 is reset */
		break;
	}
}

uint8_t i8042_read(struct i8042 *k, uint16_t port)
{
	pthread_mutex_lock(&k->lock);
	uint8_t v;
	if (port == I8042_DATA_PORT) {
		v = 0;
		if (k->count) {
			v = k->queue[k->head].byte;
			k->head = (k->head + 1) % I8042_QUEUE;
			k->count--;
		}
	} else {
		v = STATUS_SYS | STATUS_CMD;
		if (k->count)
			v |= STATUS_OBF | (k->queue[k->head].aux ? STATUS_AUX_DATA : 0);
	}
	update_irqs(k);
	pthread_mutex_unlock(&k->lock);
	return v;
}

void i8042_write(struct i8042 *k, uint16_t port, uint8_t value)
{
	pthread_mutex_lock(&k->lock);
	if (port == I8042_COMMAND_PORT) {
		k->pending_command = 0;
		controller_command(k, value);
	} else if (k->pending_command) {
		uint8_t cmd = k->pending_command;
		k->pending_command = 0;
		controller_data(k, cmd, value);
	} else {
		keyboard_command(k, value);
	}
	update_irqs(k);
	pthread_mutex_unlock(&k->lock);
}

/* I8042, version 1: mode, pending_command, pending_kbd_command, out_port, kbd_level, aux_level,
 * count (u8 each), then count entries oldest first: byte, aux (u8 each). */
int i8042_save(struct i8042 *k, struct state_writer *w)
{
	int rc = state_section_begin(w, STATE_SECTION_I8042, 0, DEVICE_STATE_VERSION, 0);
	if (rc)
		return rc;
	pthread_mutex_lock(&k->lock);
	const uint8_t regs[] = { k->mode, k->pending_command, k->pending_kbd_command, k->out_port,
				 (uint8_t)k->kbd_level, (uint8_t)k->aux_level, (uint8_t)k->count };
	state_put_bytes(w, regs, sizeof(regs));
	for (unsigned i = 0; i < k->count; i++) {
		unsigned slot = (k->head + i) % I8042_QUEUE;
		state_put_u8(w, k->queue[slot].byte);
		state_put_u8(w, k->queue[slot].aux);
	}
	pthread_mutex_unlock(&k->lock);
	return state_section_end(w);
}

/* The commands that wait for a data byte (controller_command, keyboard_command). */
static bool pending_command_valid(uint8_t cmd)
{
	return cmd == 0 || cmd == CMD_WRITE_MODE || cmd == CMD_WRITE_OUTPORT ||
	       cmd == CMD_KBD_LOOP || cmd == CMD_AUX_LOOP || cmd == CMD_AUX_SEND;
}

static bool pending_kbd_command_valid(uint8_t cmd)
{
	return cmd == 0 || cmd == KBD_SET_LEDS || cmd == KBD_SET_RATE || cmd == KBD_SCANCODE;
}

int i8042_restore(struct i8042 *k, const struct state_section *sec)
{
	int rc = device_section_check(sec, STATE_SECTION_I8042, "i8042");
	if (rc)
		return rc;
	struct state_cursor c = sec->payload;
	struct i8042 t = { 0 }; /* the saved state, checked before k changes */
	t.mode = state_get_u8(&c);
	t.pending_command = state_get_u8(&c);
	t.pending_kbd_command = state_get_u8(&c);
	t.out_port = state_get_u8(&c);
	t.kbd_level = state_get_u8(&c);
	t.aux_level = state_get_u8(&c);
	t.count = state_get_u8(&c);
	if (t.count > I8042_QUEUE)
		return state_fail(-EBADMSG, "i8042: %u bytes queued, at most %d", t.count,
				  I8042_QUEUE);
	uint8_t aux = 0;
	for (unsigned i = 0; i < t.count; i++) {
		t.queue[i].byte = state_get_u8(&c);
		uint8_t a = state_get_u8(&c);
		aux |= a;
		t.queue[i].aux = a;
	}
	if ((rc = device_section_end(&c, "i8042")))
		return rc;
	if (aux > 1)
		return state_fail(-EBADMSG, "i8042: a queued byte's port is not 0 or 1");
	if (!pending_command_valid(t.pending_command) ||
	    !pending_kbd_command_valid(t.pending_kbd_command))
		return state_fail(-EBADMSG, "i8042: pending command 0x%02x or keyboard command "
				  "0x%02x takes no data byte", t.pending_command,
				  t.pending_kbd_command);
	int kbd, aux_level;
	irqs_wanted(&t, &kbd, &aux_level);
	if (t.kbd_level != kbd || t.aux_level != aux_level)
		return state_fail(-EBADMSG, "i8042: IRQ levels %d/%d (keyboard/aux), but its queue "
				  "and mode say %d/%d", t.kbd_level, t.aux_level, kbd, aux_level);
	pthread_mutex_lock(&k->lock);
	k->mode = t.mode;
	k->pending_command = t.pending_command;
	k->pending_kbd_command = t.pending_kbd_command;
	k->out_port = t.out_port; /* as saved, reset line included: restoring pulses nothing */
	memcpy(k->queue, t.queue, sizeof(k->queue));
	k->head = 0;
	k->count = t.count;
	/* Always driven, also when low: the lines' other end was restored on its own. */
	irq_line_set(&k->kbd_irq, k->kbd_level = t.kbd_level);
	irq_line_set(&k->aux_irq, k->aux_level = t.aux_level);
	pthread_mutex_unlock(&k->lock);
	return 0;
}
