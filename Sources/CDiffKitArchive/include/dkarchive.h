// dkarchive: a CRC-32C (the checksum tar-split records keep of each file's content),
// hardware-accelerated where the CPU can.
#ifndef DKARCHIVE_H
#define DKARCHIVE_H
#include <stddef.h>
#include <stdint.h>

// CRC-32C of `n` bytes continuing `crc` (0 to start); hardware-accelerated where possible.
uint32_t dk_crc32c(uint32_t crc, const void *data, size_t n);

// The same, always by table (the portable path; tests compare the two).
uint32_t dk_crc32c_table(uint32_t crc, const void *data, size_t n);

#endif
