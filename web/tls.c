/* The server certificate (web/tls.h), through OpenSSL. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[4096];
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && len + n < (1u << 20)) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			char *b = realloc(buf, cap);
			if (!b)
				break;
			buf = b;
		}
		memcpy(buf + len, chunk, n);
		len += n;
	}
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static int write_pem(const char *path, mode_t mode, int (*put)(BIO *, void *), void *obj)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	BIO *b = f ? BIO_new_fp(f, BIO_NOCLOSE) : NULL;
	int ok = b && put(b, obj);
	BIO_free(b);
	if (f)
		ok = fclose(f) == 0 && ok;
	else
		close(fd);
	return ok ? 0 : -1;
}

static int put_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int put_cert(BIO *b, void *c)
{
	return PEM_write_bio_X509(b, c);
}

static int generate(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	int rc = -1;
	if (!k || !x)
		goto out;
	unsigned char serial[16];
	FILE *r = fopen("/dev/urandom", "re");
	if (!r || fread(serial, 1, sizeof(serial), r) != sizeof(serial)) {
		if (r)
			fclose(r);
		goto out;
	}
	fclose(r);
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
	X509_set_pubkey(x, k);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Viridian vmmsweb", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1, 0);
	X509_set_issuer_name(x, name);
	char san[300];
	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", host);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (!X509_sign(x, k, EVP_sha256()))
		goto out;
	if (write_pem(key_path, 0600, put_key, k) < 0) {
		snprintf(err, errlen, "%s: %s", key_path, strerror(errno));
		rc = -2;
		goto out;
	}
	if (write_pem(cert_path, 0644, put_cert, x) < 0) {
		snprintf(err, errlen, "%s: %s", cert_path, strerror(errno));
		unlink(key_path);
		rc = -2;
		goto out;
	}
	rc = 0;
out:
	if (rc == -1)
		snprintf(err, errlen, "cannot make a self-signed certificate (OpenSSL)");
	X509_free(x);
	EVP_PKEY_free(k);
	return rc < 0 ? -1 : 0;
}

int web_tls_load(const char *cert_path, const char *key_path, int gen, char **cert, char **key, char fingerprint[65],
		 char *err, size_t errlen)
{
	*cert = *key = NULL;
	struct stat st;
	bool have_cert = stat(cert_path, &st) == 0, have_key = stat(key_path, &st) == 0;
	if (gen && !have_cert && !have_key && generate(cert_path, key_path, err, errlen) < 0)
		return -1;
	if (stat(key_path, &st) == 0 && (st.st_mode & 077)) {
		snprintf(err, errlen, "%s: the private key is readable by others (chmod 600 it)", key_path);
		return -1;
	}
	*cert = slurp(cert_path);
	*key = slurp(key_path);
	if (!*cert || !*key) {
		snprintf(err, errlen, "%s: %s", !*cert ? cert_path : key_path, strerror(errno ? errno : ENOENT));
		goto fail;
	}
	BIO *b = BIO_new_mem_buf(*cert, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!x || !X509_digest(x, EVP_sha256(), md, &len) || len != 32) {
		X509_free(x);
		snprintf(err, errlen, "%s: not a PEM certificate", cert_path);
		goto fail;
	}
	X509_free(x);
	for (unsigned i = 0; i < 32; i++)
		snprintf(fingerprint + 2 * i, 3, "%02x", md[i]);
	return 0;
fail:
	free(*cert);
	free(*key);
	*cert = *key = NULL;
	return -1;
}
