// SHA-256 through libcrypto's own functions (SHA256_Init/Update/Final): declared deprecated by
// OpenSSL 3, but they need none of the EVP interface's set-up (reading openssl.cnf, loading the
// default provider and registering every algorithm), which cost more than digesting a small
// layer; the same assembly (SHA-NI where the CPU has it) does the work.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
