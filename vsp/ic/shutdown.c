/* Shutdown IC: the host asks the guest to power off or restart; the guest says yes or no. */
#include <errno.h>
#include <string.h>

#include "ic_internal.h"

static const uint32_t sd_versions[] = {IC_VERSION(3, 2), IC_VERSION(3, 1), IC_VERSION(3, 0), IC_VERSION(1, 0)};

static void sd_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	(void)body;
	(void)len;
	dev->sd_result = hdr->status == IC_HV_S_OK ? 1 : -1;
}

/* Saved: u8 result (0 none yet, 1 accepted, 2 refused). A request in flight needs nothing more:
 * the guest answers it after the restore with the transaction id the framework keeps. */
static int sd_save(struct ic_dev *dev, struct state_writer *w)
{
	state_put_u8(w, dev->sd_result < 0 ? 2 : (uint8_t)dev->sd_result);
	return 0;
}

static int sd_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	uint8_t result = state_get_u8(c);
	if (state_cursor_ok(c) && result > 2)
		return state_fail(-EINVAL, "ic shutdown: result %u", result);
	int rc = ic_restore_commit(dev, s, c);
	if (rc == 0)
		dev->sd_result = result == 2 ? -1 : result;
	return rc;
}

static const struct ic_service shutdown_svc = {
	.name = "shutdown",
	.class_id = IC_SHUTDOWN_CLASS,
	.instance_id = VMBUS_GUID_INIT(0xb6650ff7, 0x33bc, 0x4840, 0x8b, 0xcc, 0x24, 0x09, 0x2c, 0x3a, 0x3e, 0x49),
	.msgtype = ICMSGTYPE_SHUTDOWN,
	.versions = sd_versions,
	.nversions = 4,
	.on_response = sd_response,
	.save = sd_save,
	.restore = sd_restore,
};

struct ic_dev *ic_shutdown_add(struct vmbus_server *srv)
{
	return ic_add(srv, &shutdown_svc);
}

int ic_shutdown_request(struct ic_dev *dev, bool reboot, bool force, const char *message)
{
	if (dev->pending_tid)
		return -1;
	struct shutdown_msg_data m;
	memset(&m, 0, sizeof(m));
	m.reason_code = 0;
	m.timeout_seconds = 0;
	m.flags = (reboot ? IC_SHUTDOWN_FLAG_REBOOT : IC_SHUTDOWN_FLAG_SHUTDOWN) | (force ? IC_SHUTDOWN_FLAG_FORCE : 0);
	if (message)
		strncpy((char *)m.display_message, message, sizeof(m.display_message) - 1);
	if (ic_send_request(dev, &m, sizeof(m)) != 0)
		return -1;
	dev->sd_result = 0;
	return 0;
}

int ic_shutdown_result(const struct ic_dev *dev)
{
	return dev->sd_result;
}
