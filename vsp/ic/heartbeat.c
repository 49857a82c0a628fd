/* Heartbeat IC: the host sends a sequence number, a live guest answers it plus one. */
#include <errno.h>
#include <string.h>

#include "ic_internal.h"

static const uint32_t hb_versions[] = {IC_VERSION(3, 0), IC_VERSION(1, 0)};

static void hb_response(struct ic_dev *dev, const struct icmsg_hdr *hdr, const uint8_t *body, uint32_t len)
{
	struct heartbeat_msg_data m;
	if (hdr->status != IC_HV_S_OK || len < sizeof(m))
		return;
	memcpy(&m, body, sizeof(m));
	if (m.seq_num == dev->hb_seq + 1)
		dev->hb_answers++;
}

/* Saved: u64 last sequence number sent, u64 answers. A request in flight keeps its sequence
 * number (and the framework its transaction id), so the guest's late answer still counts. */
static int hb_save(struct ic_dev *dev, struct state_writer *w)
{
	state_put_u64(w, dev->hb_seq);
	state_put_u64(w, dev->hb_answers);
	return 0;
}

static int hb_restore(struct ic_dev *dev, const struct ic_saved *s, struct state_cursor *c)
{
	uint64_t seq = state_get_u64(c), answers = state_get_u64(c);
	if (state_cursor_ok(c) && answers > seq)
		return state_fail(-EINVAL, "ic heartbeat: %llu answers to %llu requests", (unsigned long long)answers,
				  (unsigned long long)seq);
	int rc = ic_restore_commit(dev, s, c);
	if (rc == 0) {
		dev->hb_seq = seq;
		dev->hb_answers = answers;
	}
	return rc;
}

static const struct ic_service heartbeat = {
	.name = "heartbeat",
	.class_id = IC_HEARTBEAT_CLASS,
	.instance_id = VMBUS_GUID_INIT(0x242ff919, 0x07db, 0x4180, 0x9c, 0x2e, 0xb8, 0x6c, 0xb6, 0x8c, 0x8c, 0x55),
	.msgtype = ICMSGTYPE_HEARTBEAT,
	.versions = hb_versions,
	.nversions = 2,
	.on_response = hb_response,
	.save = hb_save,
	.restore = hb_restore,
};

struct ic_dev *ic_heartbeat_add(struct vmbus_server *srv)
{
	return ic_add(srv, &heartbeat);
}

int ic_heartbeat_tick(struct ic_dev *dev)
{
	struct heartbeat_msg_data m = {.seq_num = dev->hb_seq + 1};
	if (ic_send_request(dev, &m, sizeof(m)) != 0)
		return -1;
	dev->hb_seq = m.seq_num;
	return 0;
}

uint64_t ic_heartbeat_answers(const struct ic_dev *dev)
{
	return dev->hb_answers;
}
