/* libFuzzer target: Import-VM's configuration reader (vmms/vmconfig.c) on any bytes. What it
 * accepts must be self-consistent (every index in range, every chain acyclic) and written back
 * and read again to the same configuration. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmms/vmconfig.h"

static struct vmcfg a, b;

static void consistent(const struct vmcfg *c)
{
	for (int i = 0; i < c->nimages; i++) {
		int steps = 0;
		for (int x = i; x >= 0; x = c->images[x].parent)
			if (x >= c->nimages || ++steps > c->nimages)
				abort();
	}
	for (int i = 0; i < c->ndisks; i++)
		if (c->disks[i].image < 0 || c->disks[i].image >= c->nimages)
			abort();
	for (int k = 0; k < c->ncheckpoints; k++)
		for (int i = 0; i < c->checkpoints[k].ndisks; i++)
			if (c->checkpoints[k].disks[i].image < 0 || c->checkpoints[k].disks[i].image >= c->nimages)
				abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	if (vmcfg_parse((const char *)data, size, &a, err, sizeof(err)) < 0)
		return 0;
	consistent(&a);
	json_t *o = vmcfg_to_json(&a);
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!t || vmcfg_parse(t, strlen(t), &b, err, sizeof(err)) < 0 || memcmp(&a, &b, sizeof(a)))
		abort();
	free(t);
	return 0;
}
