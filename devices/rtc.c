/* CMOS RTC: time registers are computed from host time on every read. */
#include <stdbool.h>
#include <string.h>

#include "devices/rtc.h"
#include "section.h"

/* Registers */
#define RTC_SECONDS      0x00
#define RTC_MINUTES      0x02
#define RTC_HOURS        0x04
#define RTC_DAY_OF_WEEK  0x06
#define RTC_DAY_OF_MONTH 0x07
#define RTC_MONTH        0x08
#define RTC_YEAR         0x09
#define RTC_REG_A        0x0A
#define RTC_REG_B        0x0B
#define RTC_REG_C        0x0C
#define RTC_REG_D        0x0D
#define RTC_CENTURY      0x32

/* Register A: divider 32.768 kHz, rate 1024 Hz; bit 7 UIP never set (updates are instant) */
#define REG_A_DEFAULT 0x26
/* Register B bits */
#define REG_B_SET     0x80
#define REG_B_DM_BIN  0x04
#define REG_B_24H     0x02
/* Register D: VRT, the battery is good */
#define REG_D_VRT     0x80

static time_t host_now(void)
{
	return time(NULL);
}

void rtc_init(struct rtc *r, time_t (*now)(void))
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->now = now ? now : host_now;
	r->cmos[RTC_REG_A] = REG_A_DEFAULT;
	r->cmos[RTC_REG_B] = REG_B_24H;
	r->cmos[RTC_REG_D] = REG_D_VRT;
}

void rtc_destroy(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

static uint8_t to_reg(const struct rtc *r, int v)
{
	return (r->cmos[RTC_REG_B] & REG_B_DM_BIN) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static int from_reg(const struct rtc *r, uint8_t v)
{
	return (r->cmos[RTC_REG_B] & REG_B_DM_BIN) ? v : (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t hour_to_reg(const struct rtc *r, int hour)
{
	if (r->cmos[RTC_REG_B] & REG_B_24H)
		return to_reg(r, hour);
	int h12 = hour % 12 ? hour % 12 : 12;
	return to_reg(r, h12) | (hour >= 12 ? 0x80 : 0);
}

static int hour_from_reg(const struct rtc *r, uint8_t v)
{
	if (r->cmos[RTC_REG_B] & REG_B_24H)
		return from_reg(r, v);
	int h = from_reg(r, v & 0x7F) % 12;
	return (v & 0x80) ? h + 12 : h;
}

static struct tm guest_tm(const struct rtc *r)
{
	time_t t = r->now() + r->offset_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	return tm;
}

static uint8_t time_register(const struct rtc *r, uint8_t index)
{
	struct tm tm = (r->cmos[RTC_REG_B] & REG_B_SET) ? r->latched : guest_tm(r);
	switch (index) {
	case RTC_SECONDS: return to_reg(r, tm.tm_sec);
	case RTC_MINUTES: return to_reg(r, tm.tm_min);
	case RTC_HOURS: return hour_to_reg(r, tm.tm_hour);
	case RTC_DAY_OF_WEEK: return to_reg(r, tm.tm_wday + 1);
	case RTC_DAY_OF_MONTH: return to_reg(r, tm.tm_mday);
	case RTC_MONTH: return to_reg(r, tm.tm_mon + 1);
	case RTC_YEAR: return to_reg(r, tm.tm_year % 100);
	case RTC_CENTURY: return to_reg(r, (tm.tm_year + 1900) / 100);
	}
	return r->cmos[index];
}

static void apply_time(struct rtc *r, struct tm tm)
{
	time_t t = timegm(&tm);
	if (t != (time_t)-1)
		r->offset_s = (int64_t)(t - r->now());
}

/* The guest sets one field. With SET held (how Linux sets the clock) fields collect in
 * `latched` and take effect together when SET clears, so a half-written date never gets
 * normalised; without SET the offset moves at once so the field reads back as written. */
static void set_time_register(struct rtc *r, uint8_t index, uint8_t value)
{
	bool held = r->cmos[RTC_REG_B] & REG_B_SET;
	struct tm tm = held ? r->latched : guest_tm(r);
	switch (index) {
	case RTC_SECONDS: tm.tm_sec = from_reg(r, value); break;
	case RTC_MINUTES: tm.tm_min = from_reg(r, value); break;
	case RTC_HOURS: tm.tm_hour = hour_from_reg(r, value); break;
	case RTC_DAY_OF_WEEK: return; /* derived from the date */
	case RTC_DAY_OF_MONTH: tm.tm_mday = from_reg(r, value); break;
	case RTC_MONTH: tm.tm_mon = from_reg(r, value) - 1; break;
	case RTC_YEAR: tm.tm_year = (tm.tm_year + 1900) / 100 * 100 + from_reg(r, value) - 1900; break;
	case RTC_CENTURY: tm.tm_year = from_reg(r, value) * 100 + tm.tm_year % 100 - 1900; break;
	}
	if (held)
		r->latched = tm;
	else
		apply_time(r, tm);
}

static int is_time_register(uint8_t index)
{
	return index <= RTC_YEAR || index == RTC_CENTURY;
}

uint8_t rtc_read(struct rtc *r, uint16_t port)
{
	pthread_mutex_lock(&r->lock);
	uint8_t v = 0xFF;
	if (port == RTC_PORT_DATA) {
		if (is_time_register(r->index) && !(r->index & 1 && r->index < RTC_DAY_OF_WEEK)) {
			v = time_register(r, r->index);
		} else {
			v = r->cmos[r->index];
			if (r->index == RTC_REG_C)
				r->cmos[RTC_REG_C] = 0; /* interrupt flags clear on read */
		}
	}
	pthread_mutex_unlock(&r->lock);
	return v;
}

void rtc_write(struct rtc *r, uint16_t port, uint8_t value)
{
	pthread_mutex_lock(&r->lock);
	if (port == RTC_PORT_INDEX) {
		r->index = value & 0x7F; /* bit 7 masks NMI: nothing to mask here */
	} else if (is_time_register(r->index) && !(r->index & 1 && r->index < RTC_DAY_OF_WEEK)) {
		set_time_register(r, r->index, value);
	} else if (r->index == RTC_REG_A) {
		r->cmos[RTC_REG_A] = value & 0x7F;
	} else if (r->index == RTC_REG_B) {
		bool was_held = r->cmos[RTC_REG_B] & REG_B_SET, held = value & REG_B_SET;
		if (held && !was_held)
			r->latched = guest_tm(r); /* the clock stops while SET is held */
		r->cmos[RTC_REG_B] = value & ~0x70; /* no periodic, alarm or update interrupts */
		if (was_held && !held)
			apply_time(r, r->latched);
	} else if (r->index != RTC_REG_C && r->index != RTC_REG_D) {
		r->cmos[r->index] = value;
	}
	pthread_mutex_unlock(&r->lock);
}

/* Bounds a restore accepts: wide enough for every value the guest can write through the
 * registers (a field of 0-99 BCD digits reads as up to 165, binary up to 255; a century
 * up to 255), narrow enough that now() + offset_s and the field arithmetic cannot overflow. */
#define OFFSET_MAX    (1ll << 40)  /* seconds, about 35000 years */
#define TM_FIELD_MAX  255
#define TM_YEAR_MAX   (1 << 20)

/* RTC, version 1: index (u8), CMOS RAM (128 bytes), offset_s (u64, two's complement), the
 * latched tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_wday (u32 each, two's
 * complement; what register reads take while SET is held). */
int rtc_save(struct rtc *r, struct state_writer *w)
{
	int rc = state_section_begin(w, STATE_SECTION_RTC, 0, DEVICE_STATE_VERSION, 0);
	if (rc)
		return rc;
	pthread_mutex_lock(&r->lock);
	state_put_u8(w, r->index);
	state_put_bytes(w, r->cmos, sizeof(r->cmos));
	state_put_u64(w, (uint64_t)r->offset_s);
	const struct tm *l = &r->latched;
	const int fields[] = { l->tm_sec, l->tm_min, l->tm_hour, l->tm_mday, l->tm_mon,
			       l->tm_year, l->tm_wday };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		state_put_u32(w, (uint32_t)fields[i]);
	pthread_mutex_unlock(&r->lock);
	return state_section_end(w);
}

static bool in_range(int v, int lo, int hi)
{
	return v >= lo && v <= hi;
}

int rtc_restore(struct rtc *r, const struct state_section *sec)
{
	int rc = device_section_check(sec, STATE_SECTION_RTC, "rtc");
	if (rc)
		return rc;
	struct state_cursor c = sec->payload;
	uint8_t index = state_get_u8(&c), cmos[sizeof(r->cmos)];
	state_get_bytes(&c, cmos, sizeof(cmos));
	int64_t offset = (int64_t)state_get_u64(&c);
	struct tm l = { 0 };
	l.tm_sec = (int)state_get_u32(&c);
	l.tm_min = (int)state_get_u32(&c);
	l.tm_hour = (int)state_get_u32(&c);
	l.tm_mday = (int)state_get_u32(&c);
	l.tm_mon = (int)state_get_u32(&c);
	l.tm_year = (int)state_get_u32(&c);
	l.tm_wday = (int)state_get_u32(&c);
	if ((rc = device_section_end(&c, "rtc")))
		return rc;
	if (index >= sizeof(cmos))
		return state_fail(-EBADMSG, "rtc: index %u, there are %zu registers", index,
				  sizeof(cmos));
	if ((cmos[RTC_REG_A] & 0x80) || (cmos[RTC_REG_B] & 0x70) || cmos[RTC_REG_C] ||
	    cmos[RTC_REG_D] != REG_D_VRT)
		return state_fail(-EBADMSG, "rtc: registers A-D 0x%02x 0x%02x 0x%02x 0x%02x are not "
				  "values the RTC has", cmos[RTC_REG_A], cmos[RTC_REG_B],
				  cmos[RTC_REG_C], cmos[RTC_REG_D]);
	if (offset < -OFFSET_MAX || offset > OFFSET_MAX)
		return state_fail(-EBADMSG, "rtc: guest time is %lld s from host time, at most %lld",
				  (long long)offset, OFFSET_MAX);
	if (!in_range(l.tm_sec, 0, TM_FIELD_MAX) || !in_range(l.tm_min, 0, TM_FIELD_MAX) ||
	    !in_range(l.tm_hour, 0, TM_FIELD_MAX) || !in_range(l.tm_mday, 0, TM_FIELD_MAX) ||
	    !in_range(l.tm_mon, -1, TM_FIELD_MAX - 1) || !in_range(l.tm_wday, 0, 6) ||
	    !in_range(l.tm_year, -TM_YEAR_MAX, TM_YEAR_MAX))
		return state_fail(-EBADMSG, "rtc: latched time %d-%d-%d %d:%d:%d (day %d) is out of "
				  "range", l.tm_year, l.tm_mon, l.tm_mday, l.tm_hour, l.tm_min,
				  l.tm_sec, l.tm_wday);
	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset_s = offset; /* guest time goes on from the new host's clock, as a CMOS clock
			       * that kept running while the VM was saved */
	r->latched = l;
	pthread_mutex_unlock(&r->lock);
	return 0;
}
