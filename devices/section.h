/* What every device's restore checks first: its section type and version. */
#ifndef VIRIDIAN_DEVICES_SECTION_H
#define VIRIDIAN_DEVICES_SECTION_H

#include <errno.h>
#include <stdint.h>

#include "state/savedstate.h"

#define DEVICE_STATE_VERSION 1 /* of every device section */

static inline int device_section_check(const struct state_section *sec, uint32_t type,
				       const char *name)
{
	if (sec->type != type)
		return state_fail(-EINVAL, "%s: section type 0x%x is not the %s's", name, sec->type,
				  name);
	if (sec->version != DEVICE_STATE_VERSION)
		return state_fail(-EPROTONOSUPPORT, "%s: section version %u is not supported (this "
				  "build reads %d)", name, sec->version, DEVICE_STATE_VERSION);
	return 0;
}

/* After the gets: the payload was exactly as long as the layout. */
static inline int device_section_end(const struct state_cursor *c, const char *name)
{
	if (!state_cursor_ok(c))
		return state_fail(-EBADMSG, "%s: payload of %zu bytes is truncated", name, c->size);
	if (state_cursor_left(c))
		return state_fail(-EBADMSG, "%s: %zu bytes after the payload", name,
				  state_cursor_left(c));
	return 0;
}

#endif
