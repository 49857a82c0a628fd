/* Checkpoint tree and disk chain decisions (include/vmms/cptree.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vmms/cptree.h"

/* Follows parents from i; false when the chain leaves the array or loops. */
static bool chain_ok(const struct cp_image *imgs, int n, int i)
{
	for (int steps = 0; i >= 0; i = imgs[i].parent, steps++)
		if (i >= n || steps > n)
			return false;
	return true;
}

static int children(const struct cp_image *imgs, int n, int node, int *one)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		if (imgs[i].parent == node) {
			c++;
			*one = i;
		}
	return c;
}

/* Is node the active disk of some LUN or an ancestor of one (the running worker reads it)? */
static bool in_active_chain(const struct cp_image *imgs, int n, int node)
{
	for (int i = 0; i < n; i++)
		if (imgs[i].active_lun >= 0)
			for (int k = i, steps = 0; k >= 0 && steps <= n; k = imgs[k].parent, steps++)
				if (k == node)
					return true;
	return false;
}

struct cp_action cp_plan(const struct cp_image *imgs, int n, bool live, int *pending)
{
	struct cp_action none = { CP_NOTHING, -1, -1, -1 }, act = none;
	int waiting = 0;
	for (int i = 0; i < n; i++)
		if (!chain_ok(imgs, n, i)) {
			if (pending)
				*pending = 0;
			return none;
		}
	for (int i = 0; i < n; i++) {
		if (imgs[i].needed)
			continue;
		int child = -1, nc = children(imgs, n, i, &child);
		bool busy = live && in_active_chain(imgs, n, i);
		struct cp_action a = none;
		if (nc == 0 && !busy)
			a = (struct cp_action){ imgs[i].owned ? CP_DELETE : CP_FORGET, i, -1, -1 };
		else if (nc == 1 && children(imgs, n, child, &(int){ 0 }) == 0) {
			/* the leaf folds into it: offline, or by the worker when it is the running disk */
			if (live && imgs[child].active_lun >= 0)
				a = (struct cp_action){ CP_LIVE_MERGE, i, child, imgs[child].active_lun };
			else if (!busy)
				a = (struct cp_action){ CP_FOLD, i, child, -1 };
		}
		if (a.kind == CP_NOTHING)
			waiting++;
		else if (act.kind == CP_NOTHING)
			act = a;
	}
	if (pending)
		*pending = waiting;
	return act;
}

bool cp_subtree(const int *parent, int n, int root, bool with_children, bool *out)
{
	memset(out, 0, (size_t)n * sizeof(*out));
	if (root < 0 || root >= n)
		return false;
	/* every walk up must end within n steps: else a parent is out of range or there is a cycle */
	for (int i = 0; i < n; i++)
		for (int k = parent[i], steps = 0; k >= 0; k = parent[k], steps++)
			if (k >= n || steps > n)
				return false;
	out[root] = true;
	if (!with_children)
		return true;
	for (int i = 0; i < n; i++)
		for (int k = parent[i]; k >= 0; k = parent[k]) {
			if (k == root) {
				out[i] = true;
				break;
			}
		}
	return true;
}

int cp_surviving_parent(const int *parent, int n, const bool *removed, int i)
{
	int k = i >= 0 && i < n ? parent[i] : -1;
	for (int steps = 0; k >= 0 && k < n && removed[k] && steps <= n; steps++)
		k = parent[k];
	return k >= 0 && k < n && !removed[k] ? k : -1;
}

void cp_default_name(const char *vm_name, const struct tm *tm, char *out, size_t len)
{
	int h = tm->tm_hour % 12;
	snprintf(out, len, "%s - (%d/%d/%d - %d:%02d:%02d %s)", vm_name, tm->tm_mon + 1, tm->tm_mday, tm->tm_year + 1900,
		 h ? h : 12, tm->tm_min, tm->tm_sec, tm->tm_hour < 12 ? "AM" : "PM");
}

bool cp_child_path(const char *parent_path, const char *guid, char *out, size_t len)
{
	const char *slash = strrchr(parent_path, '/');
	const char *base = slash ? slash + 1 : parent_path;
	const char *dot = strrchr(base, '.');
	size_t stem = dot && dot != base ? (size_t)(dot - parent_path) : strlen(parent_path);
	/* a checkpoint's child of a child: the GUID is replaced, the stem stays short */
	const char *us = strrchr(base, '_');
	if (us && dot && dot > us && (size_t)(dot - us - 1) == 36)
		stem = (size_t)(us - parent_path);
	/* VHD parents get VHD children (.avhd), everything else VHDX */
	bool vhd = dot && (!strcasecmp(dot, ".vhd") || !strcasecmp(dot, ".avhd"));
	int r = snprintf(out, len, "%.*s_%s.%s", (int)stem, parent_path, guid, vhd ? "avhd" : "avhdx");
	return r > 0 && (size_t)r < len;
}
