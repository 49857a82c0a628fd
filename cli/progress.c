/* Terminal progress bar for long operations (convert, merge, optimize). */
#include "cmdlet.h"

#include <stdio.h>
#include <unistd.h>

void progress_init(struct progress *p, const char *label)
{
	p->label = label;
	p->last_pct = -1;
	p->tty = isatty(STDERR_FILENO);
}

void progress_update(uint64_t done, uint64_t total, void *ctx)
{
	struct progress *p = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	if (!p->tty || pct == p->last_pct)
		return;
	p->last_pct = pct;
	char bar[41];
	for (int i = 0; i < 40; i++)
		bar[i] = i < pct * 40 / 100 ? '#' : ' ';
	bar[40] = 0;
	fprintf(stderr, "\r%s [%s] %3d%%", p->label, bar, pct);
	fflush(stderr);
}

void progress_done(struct progress *p)
{
	if (p->tty && p->last_pct >= 0)
		fputc('\n', stderr);
}
