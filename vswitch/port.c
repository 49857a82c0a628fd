/* The adapter <-> switch hello and connection (see include/vswitch/port.h). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vswitch/port.h"
#include "vswitch/switch.h"

bool vswitch_parse_mac(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 6; i++) {
		const char *p = s + 3 * i;
		if (i < 5 && p[2] != ':' && p[2] != '-')
			return false;
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = p[k];
			unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
				   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
				   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
			if (d == 16)
				return false;
			v = v << 4 | d;
		}
		mac[i] = (uint8_t)v;
	}
	return true;
}

void vswitch_format_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static bool valid_name(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("._:/@-", *s)))
			return false;
	return true;
}

size_t vswitch_hello_encode(const struct vswitch_hello *h, char *buf, size_t len)
{
	char mac[18];
	vswitch_format_mac(h->mac, mac);
	int n = snprintf(buf, len, "{\"op\":\"connect\",\"name\":\"%s\",\"mac\":\"%s\",\"vlan\":%u,\"mac_spoofing\":%s,\"gso\":%s}",
			 valid_name(h->name) ? h->name : "", mac, h->vlan, h->mac_spoofing ? "true" : "false",
			 h->gso ? "true" : "false");
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

bool vswitch_hello_parse(const void *msg, size_t len, struct vswitch_hello *h, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	json_error_t jerr;
	json_t *j = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(j)) {
		snprintf(err, errlen, "hello is not a JSON object");
		json_decref(j);
		return false;
	}
	bool ok = false;
	json_t *op = json_object_get(j, "op"), *name = json_object_get(j, "name"), *mac = json_object_get(j, "mac"),
	       *vlan = json_object_get(j, "vlan"), *spoof = json_object_get(j, "mac_spoofing"),
	       *gso = json_object_get(j, "gso");
	if (!json_is_string(op) || strcmp(json_string_value(op), "connect") != 0)
		snprintf(err, errlen, "hello wants \"op\":\"connect\"");
	else if (name && (!json_is_string(name) || json_string_length(name) >= sizeof(h->name) ||
			  !valid_name(json_string_value(name))))
		snprintf(err, errlen, "bad port name");
	else if (!json_is_string(mac) || !vswitch_parse_mac(json_string_value(mac), h->mac) || (h->mac[0] & 1))
		snprintf(err, errlen, "hello wants a unicast \"mac\"");
	else if (vlan && (!json_is_integer(vlan) || json_integer_value(vlan) < 0 ||
			  json_integer_value(vlan) > VSWITCH_VLAN_MAX))
		snprintf(err, errlen, "\"vlan\" must be 0..%d", VSWITCH_VLAN_MAX);
	else if ((spoof && !json_is_boolean(spoof)) || (gso && !json_is_boolean(gso)))
		snprintf(err, errlen, "\"mac_spoofing\" and \"gso\" must be true or false");
	else {
		if (name)
			snprintf(h->name, sizeof(h->name), "%s", json_string_value(name));
		h->vlan = vlan ? (uint16_t)json_integer_value(vlan) : 0;
		h->mac_spoofing = spoof && json_is_true(spoof);
		h->gso = gso && json_is_true(gso);
		ok = true;
	}
	json_decref(j);
	return ok;
}

int vswitch_port_connect(const char *path, struct vswitch_hello *h, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "switch socket path too long: %s", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int sz = VSWITCH_PORT_SOCKBUF;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	char msg[VSWITCH_HELLO_MAX];
	size_t n = vswitch_hello_encode(h, msg, sizeof(msg));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "switch %s: %s", path, strerror(errno));
		goto fail;
	}
	if (send(fd, msg, n, MSG_NOSIGNAL) != (ssize_t)n) {
		snprintf(err, errlen, "switch %s: sending the hello: %s", path, strerror(errno));
		goto fail;
	}
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1) {
		snprintf(err, errlen, "switch %s: no answer", path);
		goto fail;
	}
	ssize_t r = recv(fd, msg, sizeof(msg) - 1, 0);
	if (r <= 0) {
		snprintf(err, errlen, "switch %s: closed the connection", path);
		goto fail;
	}
	json_t *reply = json_loadb(msg, (size_t)r, 0, NULL);
	json_t *ok = json_object_get(reply, "ok");
	if (!json_is_true(ok)) {
		const char *why = json_string_value(json_object_get(reply, "error"));
		snprintf(err, errlen, "switch %s refused the adapter: %s", path, why ? why : "bad answer");
		json_decref(reply);
		goto fail;
	}
	h->gso = h->gso && json_is_true(json_object_get(reply, "gso"));
	json_decref(reply);
	/* From here frames: a full switch queue must drop a frame, never stall the guest. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}
