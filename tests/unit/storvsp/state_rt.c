/* See state_rt.h. */
#include "state_rt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "state/savedstate.h"

static const uint8_t digest[STATE_DIGEST_SIZE];

int rt_save(struct fake_guest *g, int *rc)
{
	int fd = memfd_create("vsp-state", 0);
	struct state_writer *w;
	if (fd < 0 || state_writer_open(&w, fd, digest) < 0)
		abort();
	*rc = state_writer_ram(w, g->ram, FG_RAM_BYTES);
	if (!*rc)
		*rc = vmbus_server_save(g->srv, w);
	if (*rc) {
		state_writer_discard(w);
		close(fd);
		return -1;
	}
	if (state_writer_finish(w) < 0 || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	return fd;
}

/* Calls fn for each section after the RAM one; stops at a non-zero return. */
static int each_section(int fd, struct fake_guest *g, int (*fn)(void *, struct state_section *), void *ctx)
{
	struct state_reader *r;
	struct state_reader_options o = { .expected_digest = digest };
	if (lseek(fd, 0, SEEK_SET) != 0 || state_reader_open(&r, fd, &o) < 0)
		abort();
	struct state_section sec;
	int rc;
	while ((rc = state_reader_next(r, &sec)) > 0) {
		if (sec.type == STATE_SECTION_RAM) {
			if (g && state_reader_ram(r, g->ram, FG_RAM_BYTES, 0) < 0)
				abort();
			continue;
		}
		if ((rc = fn(ctx, &sec)) != 0)
			break;
	}
	state_reader_close(r);
	return rc < 0 ? rc : 0;
}

struct restore_ctx {
	struct fake_guest *g;
	const struct rt_patch *p;
};

static int restore_one(void *arg, struct state_section *sec)
{
	struct restore_ctx *c = arg;
	if (sec->type == STATE_SECTION_VMBUS)
		return vmbus_server_restore(c->g->srv, sec);
	const struct rt_patch *p = c->p;
	if (p && sec->type == p->type && sec->instance == p->instance) {
		if (p->version >= 0)
			sec->version = (uint16_t)p->version;
		if (p->payload)
			sec->payload = (struct state_cursor){ .data = p->payload, .size = p->len };
	}
	return vmbus_server_restore_device(c->g->srv, sec);
}

int rt_restore(struct fake_guest *g, int fd, const struct rt_patch *p)
{
	struct restore_ctx c = { g, p };
	int rc = each_section(fd, g, restore_one, &c);
	return rc ? rc : vmbus_server_restore_finish(g->srv);
}

struct find_ctx {
	uint32_t type, instance;
	uint8_t *copy;
	size_t len;
};

static int find_one(void *arg, struct state_section *sec)
{
	struct find_ctx *c = arg;
	if (sec->type != c->type || sec->instance != c->instance)
		return 0;
	c->len = sec->payload.size;
	c->copy = malloc(c->len + 1);
	if (!c->copy)
		abort();
	memcpy(c->copy, sec->payload.data, c->len);
	return 1;
}

uint8_t *rt_payload(int fd, uint32_t type, uint32_t instance, size_t *len)
{
	struct find_ctx c = { type, instance, NULL, 0 };
	each_section(fd, NULL, find_one, &c);
	*len = c.len;
	return c.copy;
}
