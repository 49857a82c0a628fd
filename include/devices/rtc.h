/* MC146818 CMOS real-time clock at ports 0x70 (index, bit 7 = NMI mask) and 0x71 (data).
 * Time comes from the host's clock plus an offset the guest changes by setting the
 * clock. No periodic or alarm interrupts (Linux keeps time with the reference TSC page). */
#ifndef VIRIDIAN_DEVICES_RTC_H
#define VIRIDIAN_DEVICES_RTC_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define RTC_PORT_INDEX 0x70
#define RTC_PORT_DATA  0x71

struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[128];           /* registers A-D and the battery-backed RAM */
	int64_t offset_s;            /* guest time - host time */
	struct tm latched;           /* fields written while register B's SET bit is held */
	time_t (*now)(void);         /* host UTC seconds; replaceable for tests */
};

void rtc_init(struct rtc *r, time_t (*now)(void));
void rtc_destroy(struct rtc *r);
/* port is RTC_PORT_INDEX or RTC_PORT_DATA */
uint8_t rtc_read(struct rtc *r, uint16_t port);
void rtc_write(struct rtc *r, uint16_t port, uint8_t value);

/* Saved state: an RTC section (CMOS RAM, index, the guest's offset from host time). 0 or a
 * negative errno after state_fail() (include/state/savedstate.h). */
struct state_writer;
struct state_section;
int rtc_save(struct rtc *r, struct state_writer *w);
int rtc_restore(struct rtc *r, const struct state_section *sec);

#endif
