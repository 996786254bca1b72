/* Minimal Cortex-M startup for the golden test under qemu-system-arm with semihosting (newlib rdimon).
 * Everything is loaded by qemu at its link address (code in flash/SSRAM at 0, data in RAM), so the
 * reset handler only zeroes .bss, enables the FPU where there is one, and runs main(). */
#include <stdint.h>
#include <stdlib.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern uint32_t __bss_start__, __bss_end__, __stack_top__;

void tb_reset_handler(void);
void tb_fault_handler(void);

__attribute__((section(".vectors"), used)) static const void *const tb_vectors[16] = {
    &__stack_top__, (void *)tb_reset_handler, (void *)tb_fault_handler, (void *)tb_fault_handler,
    (void *)tb_fault_handler, (void *)tb_fault_handler, (void *)tb_fault_handler, 0, 0, 0, 0,
    (void *)tb_fault_handler, (void *)tb_fault_handler, 0, (void *)tb_fault_handler, (void *)tb_fault_handler,
};

void tb_fault_handler(void) { exit(3); }

void tb_reset_handler(void)
{
    uint32_t *p;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 before the first float instruction */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb");
#endif
    for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0u;
    initialise_monitor_handles();
    exit(main());
}
