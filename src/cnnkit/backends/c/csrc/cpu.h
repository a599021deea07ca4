/* Which variant of the library this is, and which variants the CPU can run. */
#ifndef CNK_CPU_H
#define CNK_CPU_H

#include "common.h"

/* The instruction set this copy was compiled for: "avx512", "avx2" or "portable". */
CNK_API const char *cnk_isa(void);

/* What the CPU (and the OS, which must save the wide registers) supports: 2 = AVX-512 F/BW/VL with AVX2
 * and FMA, 1 = AVX2 with FMA, 0 = neither. Ask the portable variant: it runs everywhere. */
CNK_API int cnk_cpu_level(void);

#endif
