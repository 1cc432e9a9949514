/* Host test build of the firmware (tests/test_firmware_host.py): board constants of a pretend board. */
#ifndef LW_BOARD_CONFIG_H
#define LW_BOARD_CONFIG_H

#define LW_BOARD_NAME "host"
#define LW_MODEL_HASH_PREFIX "0123456789abcdef"
#define LW_CLOCK_HZ 1000000u
#define LW_RESET_CLOCK_HZ 1000000u
#define LW_CORE_M7 0
#define LW_SEMIHOSTING 0
#define LW_COUNTER_KIND 0u
#define LW_FAMILY_MPS2 0
#define LW_FAMILY_STM32F4 0
#define LW_FAMILY_STM32L4 0
#define LW_UART_LPUART 0

#endif /* LW_BOARD_CONFIG_H */
