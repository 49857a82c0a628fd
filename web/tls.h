/* vmmsweb's certificate: the configured one, or a self-signed one made on first start. */
#ifndef VIRIDIAN_WEB_TLS_H
#define VIRIDIAN_WEB_TLS_H

#include <stddef.h>

/* Reads cert_path and key_path (PEM) into *cert and *key (malloc'd, NUL-terminated). When
 * generate is set and neither file exists, first writes a new self-signed ECDSA P-256
 * certificate for the host's name (key 0600). The SHA-256 of the certificate (DER), as 64 hex
 * digits, goes to fingerprint. -1 with err. */
int web_tls_load(const char *cert_path, const char *key_path, int generate, char **cert, char **key,
		 char fingerprint[65], char *err, size_t errlen);

#endif
