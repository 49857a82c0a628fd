/* The client side of Viridian's JSON-lines control sockets (vmms's API socket, a worker's
 * --control, a switch's --control): connect, one request line, one reply line (a JSON object). */
#ifndef VIRIDIAN_VMMS_CONTROL_CLIENT_H
#define VIRIDIAN_VMMS_CONTROL_CLIENT_H

enum control_call_error {
	CONTROL_CALL_OK,
	CONTROL_CALL_UNREACHABLE, /* path too long, or connect failed (errno says why) */
	CONTROL_CALL_TIMEOUT,     /* no whole reply within the time */
	CONTROL_CALL_LOST,        /* the peer closed before a whole reply */
	CONTROL_CALL_MALFORMED,   /* the reply is not a JSON object, or absurdly long */
};

typedef struct json_t json_t;

/* Sends line (no newline) and returns the reply object, or NULL with *why set (and errno for
 * UNREACHABLE). The timeout bounds each send and receive. */
json_t *control_call(const char *path, const char *line, int timeout_ms, enum control_call_error *why);
/* control_call in two halves, for a reply that takes long (a worker saving its state): the
 * connected socket with the line sent (-1 with *why and errno), and later its one reply. */
int control_send(const char *path, const char *line, int timeout_ms, enum control_call_error *why);
json_t *control_recv(int fd, int timeout_ms, enum control_call_error *why);

#endif
