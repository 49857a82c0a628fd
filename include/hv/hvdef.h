/* The Hyper-V Top-Level Functional Specification's numbers, in one place:
 * CPUID leaves and bits, synthetic MSRs, hypercall codes, status codes, SynIC layout. */
#ifndef VIRIDIAN_HV_HVDEF_H
#define VIRIDIAN_HV_HVDEF_H

#include <stdint.h>

/* CPUID leaves */
#define HV_CPUID_VENDOR_AND_MAX      0x40000000u /* "Microsoft Hv", max leaf */
#define HV_CPUID_INTERFACE           0x40000001u /* "Hv#1" */
#define HV_CPUID_VERSION             0x40000002u
#define HV_CPUID_FEATURES            0x40000003u
#define HV_CPUID_ENLIGHTENMENT_INFO  0x40000004u
#define HV_CPUID_IMPLEMENT_LIMITS    0x40000005u
#define HV_CPUID_HARDWARE_FEATURES   0x40000006u
#define HV_CPUID_MAX_LEAF            0x4000000Au
#define HV_INTERFACE_SIGNATURE       0x31237648u /* "Hv#1" */

/* CPUID 0x40000003 EAX: partition privilege mask (low half) */
#define HV_ACCESS_VP_RUNTIME         (1u << 0)
#define HV_ACCESS_PARTITION_REF_COUNTER (1u << 1)
#define HV_ACCESS_SYNIC_REGS         (1u << 2)
#define HV_ACCESS_SYNTIMER_REGS      (1u << 3)
#define HV_ACCESS_APIC_REGS          (1u << 4)
#define HV_ACCESS_HYPERCALL_MSRS     (1u << 5)
#define HV_ACCESS_VP_INDEX           (1u << 6)
#define HV_ACCESS_RESET_MSR          (1u << 7)
#define HV_ACCESS_PARTITION_REF_TSC  (1u << 9)
#define HV_ACCESS_FREQUENCY_MSRS     (1u << 11)
/* CPUID 0x40000003 EBX: partition privilege mask (high half) */
#define HV_POST_MESSAGES             (1u << 4)
#define HV_SIGNAL_EVENTS             (1u << 5)
/* CPUID 0x40000003 EDX */
#define HV_FEATURE_FREQUENCY_MSRS_AVAILABLE (1u << 8)
/* CPUID 0x40000004 EAX: recommendations */
#define HV_HINT_RELAXED_TIMING       (1u << 5)
#define HV_HINT_DEPRECATE_AUTO_EOI   (1u << 9)

/* Synthetic MSRs */
#define HV_X64_MSR_GUEST_OS_ID       0x40000000u
#define HV_X64_MSR_HYPERCALL         0x40000001u
#define HV_X64_MSR_VP_INDEX          0x40000002u
#define HV_X64_MSR_RESET             0x40000003u
#define HV_X64_MSR_VP_RUNTIME        0x40000010u
#define HV_X64_MSR_TIME_REF_COUNT    0x40000020u
#define HV_X64_MSR_REFERENCE_TSC     0x40000021u
#define HV_X64_MSR_TSC_FREQUENCY     0x40000022u
#define HV_X64_MSR_APIC_FREQUENCY    0x40000023u
#define HV_X64_MSR_EOI               0x40000070u
#define HV_X64_MSR_ICR               0x40000071u
#define HV_X64_MSR_TPR               0x40000072u
#define HV_X64_MSR_VP_ASSIST_PAGE    0x40000073u
#define HV_X64_MSR_SCONTROL          0x40000080u
#define HV_X64_MSR_SVERSION          0x40000081u
#define HV_X64_MSR_SIEFP             0x40000082u
#define HV_X64_MSR_SIMP              0x40000083u
#define HV_X64_MSR_EOM               0x40000084u
#define HV_X64_MSR_SINT0             0x40000090u
#define HV_X64_MSR_SINT15            0x4000009Fu
#define HV_X64_MSR_STIMER0_CONFIG    0x400000B0u
#define HV_X64_MSR_STIMER3_COUNT     0x400000B7u
#define HV_X64_MSR_CRASH_P0          0x40000100u
#define HV_X64_MSR_CRASH_P4          0x40000104u
#define HV_X64_MSR_CRASH_CTL         0x40000105u
#define HV_SYNTHETIC_MSR_FIRST       0x40000000u
#define HV_SYNTHETIC_MSR_LAST        0x400001FFu

#define HV_MSR_ENABLE                (1ull << 0) /* bit 0 of HYPERCALL, SIEFP, SIMP, SCONTROL, REFERENCE_TSC, VP_ASSIST */
#define HV_MSR_PAGE_SHIFT            12
#define HV_SYNIC_VERSION             1u
#define HV_SINT_VECTOR_MASK          0xFFull
#define HV_SINT_MASKED               (1ull << 16)
#define HV_SINT_AUTO_EOI             (1ull << 17)
#define HV_SINT_POLLING              (1ull << 18)

/* Hypercall input value (RCX) */
#define HV_HYPERCALL_CODE_MASK       0xFFFFull
#define HV_HYPERCALL_FAST            (1ull << 16)
#define HV_HYPERCALL_REP_COUNT_SHIFT 32
#define HV_HYPERCALL_REP_START_SHIFT 48
#define HV_HYPERCALL_RESERVED_BITS   0xF000F000FFFE0000ull /* bits 17-31, 44-47, 60-63 */

/* Hypercall codes */
#define HVCALL_POST_MESSAGE          0x005Cu
#define HVCALL_SIGNAL_EVENT          0x005Du

/* Hypercall status codes */
#define HV_STATUS_SUCCESS                 0x0000u
#define HV_STATUS_INVALID_HYPERCALL_CODE  0x0002u
#define HV_STATUS_INVALID_HYPERCALL_INPUT 0x0003u
#define HV_STATUS_INVALID_ALIGNMENT       0x0004u
#define HV_STATUS_INVALID_PARAMETER       0x0005u
#define HV_STATUS_ACCESS_DENIED           0x0006u
#define HV_STATUS_INVALID_PARTITION_STATE 0x0007u
#define HV_STATUS_OPERATION_DENIED        0x0008u
#define HV_STATUS_INSUFFICIENT_MEMORY     0x000Bu
#define HV_STATUS_INVALID_PORT_ID         0x0011u
#define HV_STATUS_INVALID_CONNECTION_ID   0x0012u
#define HV_STATUS_INSUFFICIENT_BUFFERS    0x0013u

/* Wire layouts below are naturally aligned (no packing), so the SynIC can use atomics on
 * their fields; the asserts pin the sizes. */

/* SynIC: 16 SINTs; message page = 16 slots of 256 bytes; event-flags page = 16 × 2048 bits */
#define HV_SYNIC_SINT_COUNT          16
#define HV_MESSAGE_SIZE              256
#define HV_MESSAGE_PAYLOAD_MAX       240
#define HV_EVENT_FLAGS_BYTES         256  /* per SINT */

/* Message types */
#define HVMSG_NONE                   0x00000000u
#define HVMSG_TIMER_EXPIRED          0x80000010u

/* Message header flags */
#define HV_MESSAGE_FLAG_PENDING      0x01u

struct hv_message_header {
	uint32_t message_type;
	uint8_t payload_size;
	uint8_t message_flags;   /* HV_MESSAGE_FLAG_PENDING: the host has more queued for this slot */
	uint8_t reserved[2];
	uint64_t sender;         /* port id or partition id */
};

struct hv_message {
	struct hv_message_header header;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};

/* HvPostMessage input (guest memory, 16 + payload bytes) */
struct hv_input_post_message {
	uint32_t connection_id;
	uint32_t reserved;
	uint32_t message_type;
	uint32_t payload_size;
	uint8_t payload[HV_MESSAGE_PAYLOAD_MAX];
};

/* Reference TSC page (first 24 bytes of the page) */
struct hv_reference_tsc_page {
	volatile uint32_t tsc_sequence;  /* 0 = invalid: guest falls back to the MSR */
	uint32_t reserved1;
	volatile uint64_t tsc_scale;     /* 64.64 fixed point: ref time = ((tsc * scale) >> 64) + offset */
	volatile int64_t tsc_offset;
};

_Static_assert(sizeof(struct hv_message_header) == 16, "hv_message_header");
_Static_assert(sizeof(struct hv_message) == HV_MESSAGE_SIZE, "hv_message");
_Static_assert(sizeof(struct hv_input_post_message) == 256, "hv_input_post_message");
_Static_assert(sizeof(struct hv_reference_tsc_page) == 24, "hv_reference_tsc_page");

#endif
