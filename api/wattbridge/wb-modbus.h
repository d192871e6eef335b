/* wattbridge plugin ABI: register maps, the register codec, and the
 * host-owned Modbus server.
 *
 * Register maps are data files (data/devices/<name>.map, format described in
 * data/README.md): a device's registers with their Modbus table, address,
 * type, word order, scale, unit and the quantity they measure.  A plugin
 * loads a map, and either serves it (an emulated meter) or, later, polls a
 * device with it.
 *
 * The Modbus server belongs to the host: it owns the serial port or TCP
 * listener, the serving thread and the register image.  A plugin fills a
 * staging image from the main context and commits it; the serving thread
 * answers from the last committed image and never waits on the main loop.
 *
 * ABI 1.1 added (a plugin that calls them needs a host of ABI 1.1 or later,
 * which WB_ABI_MINOR in its descriptor makes the loader check): the
 * register accessors wb_map_get_baud(), _get_max_read(), _get_max_write(),
 * _get_min_delay(), _get_turnaround(), _get_direction(),
 * wb_map_register_get_table(), _get_range(), _is_flash(), _reads_with(),
 * _writes_with(), _get_direction(), _get_value_name(), the string codec,
 * and everything under "Read and write planning".
 *
 * Thread rules: a WbMap is immutable once loaded; its accessors, the codec
 * and the planners may be called from any thread (the reference count is
 * atomic).  The server functions say their own.
 */
#pragma once

#include <glib.h>

#include <wattbridge/wb-plugin-desc.h>
#include <wattbridge/wb-types.h>

G_BEGIN_DECLS

/* ---- Register maps ---------------------------------------------------- */

/**
 * WbMapTable: the four Modbus data tables (Modbus Application Protocol
 * V1.1b3, 4.3).  Each has its own address space.
 */
typedef enum {
    WB_MAP_COIL = 0,      /* read FC01, write FC05/FC15 */
    WB_MAP_DISCRETE = 1,  /* read FC02 */
    WB_MAP_INPUT = 2,     /* read FC04 */
    WB_MAP_HOLDING = 3,   /* read FC03 (and FC04 where the map says), write FC06/FC16 */
} WbMapTable;

/**
 * WbMapDirection: what a positive value of a power-like register means, in
 * the device's own convention; a reader converts to quantities.h's by the
 * device's role.
 */
typedef enum {
    WB_MAP_DIRECTION_IMPORT = 0,
    WB_MAP_DIRECTION_EXPORT = 1,
    WB_MAP_DIRECTION_PRODUCTION = 2,
    WB_MAP_DIRECTION_CONSUMPTION = 3,
    WB_MAP_DIRECTION_CHARGE = 4,
    WB_MAP_DIRECTION_DISCHARGE = 5,
} WbMapDirection;

/**
 * wb_map_load:
 * @instance: the instance that needs the map (for the data directories)
 * @name: a map name ("chint-dtsu666" is data/devices/chint-dtsu666.map), or
 *   a path to a .map file
 * @error: return location for an error
 *
 * Loads and validates a register map (format version 1, data/README.md).
 * Errors name the file and line: an unknown key, a bad type, a register
 * outside every served block, two registers that overlap, a unit that is
 * not its quantity's unit.
 *
 * Returns: (transfer full) (nullable): the map, or %NULL with @error set.
 * Main context.
 */
WbMap *wb_map_load(WbInstance *instance, const char *name, GError **error);

/** wb_map_load_file: like wb_map_load() for a path, without an instance. */
WbMap *wb_map_load_file(const char *path, GError **error);

WbMap *wb_map_ref(WbMap *map);
void wb_map_unref(WbMap *map);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbMap, wb_map_unref)

/** wb_map_get_name: Returns: (transfer none): the file's base name without .map. */
const char *wb_map_get_name(const WbMap *map);
/** wb_map_get_model: Returns: (transfer none): "manufacturer model" from [map]. */
const char *wb_map_get_model(const WbMap *map);
/** wb_map_get_default_unit_id: Returns: the device's factory unit id, 1..247. */
guint wb_map_get_default_unit_id(const WbMap *map);
/** wb_map_get_baud: Returns: the factory baud rate from [map] serial, or 0 when not given. */
guint wb_map_get_baud(const WbMap *map);
/** wb_map_get_max_read: Returns: the largest read request the device accepts, in registers (<= 125). */
guint wb_map_get_max_read(const WbMap *map);
/** wb_map_get_max_write: Returns: the most registers one FC16 write may carry (<= 123). Since: 1.1 */
guint wb_map_get_max_write(const WbMap *map);
/** wb_map_get_min_delay: Returns: the pause the device needs between requests, microseconds. */
gint64 wb_map_get_min_delay(const WbMap *map);
/** wb_map_get_turnaround: Returns: the device's time to answer a request, microseconds. */
gint64 wb_map_get_turnaround(const WbMap *map);
/** wb_map_get_direction: Returns: the map's WbMapDirection for power-like values, or -1. */
int wb_map_get_direction(const WbMap *map);
/** wb_map_get_n_registers: Returns: the number of registers in the map. */
guint wb_map_get_n_registers(const WbMap *map);
/** wb_map_get_register: Returns: (transfer none): register @index (0-based): holding, input,
 * discrete, coil, each in address order. */
const WbMapRegister *wb_map_get_register(const WbMap *map, guint index);
/**
 * wb_map_find_register:
 * Returns: (transfer none) (nullable): the first register (in address
 * order) with the maker's name @name ("Ua", "Addr"), or %NULL.
 */
const WbMapRegister *wb_map_find_register(const WbMap *map, const char *name);

/** wb_map_register_get_name: Returns: (transfer none): the maker's register name. */
const char *wb_map_register_get_name(const WbMapRegister *reg);
/** wb_map_register_get_table: Returns: its WbMapTable. */
guint wb_map_register_get_table(const WbMapRegister *reg);
/** wb_map_register_get_address: Returns: the wire (PDU) address, 0..65535 (the map's
 * documented number plus its address-offset). */
guint wb_map_register_get_address(const WbMapRegister *reg);
/** wb_map_register_get_size: Returns: the number of 16-bit registers it spans (1, 2, 4, or a
 * string's length); 1 for a coil or discrete input. */
guint wb_map_register_get_size(const WbMapRegister *reg);
/**
 * wb_map_register_get_quantity:
 * Returns: (transfer none) (nullable): the quantity (quantities.h) the
 * register measures, or %NULL for a parameter or an unassigned register.
 */
const char *wb_map_register_get_quantity(const WbMapRegister *reg);
/** wb_map_register_get_channel: Returns: (transfer none) (nullable): l1, l2, l3, l1-l2, ..., dcN or %NULL. */
const char *wb_map_register_get_channel(const WbMapRegister *reg);
/**
 * wb_map_register_get_key:
 * Returns: (transfer none) (nullable): "<quantity>" or "<quantity>-<channel>"
 * ("voltage-l1", "power", "energy-import-l2"): how an emulator's wiring
 * options name the measurement; %NULL when the register has no quantity.
 */
const char *wb_map_register_get_key(const WbMapRegister *reg);
/** wb_map_register_get_unit: Returns: (transfer none): the unit of decoded values ("" if none). */
const char *wb_map_register_get_unit(const WbMapRegister *reg);
/**
 * wb_map_register_get_default:
 * Returns: (transfer none) (nullable): the map's declared default for a
 * measured register: a number in the register's unit, or one of
 * "nominal-voltage", "nominal-line-voltage", "nominal-frequency"; %NULL
 * when none is declared (0 is served).
 */
const char *wb_map_register_get_default(const WbMapRegister *reg);
/** wb_map_register_is_writable: Returns: %TRUE when a master may write it. */
gboolean wb_map_register_is_writable(const WbMapRegister *reg);
/**
 * wb_map_register_is_flash:
 * Returns: %TRUE for a setting the device keeps in non-volatile memory:
 * write it rarely (flash wears out).
 */
gboolean wb_map_register_is_flash(const WbMapRegister *reg);
/**
 * wb_map_register_is_string:
 * Returns: %TRUE for a text register (type = string): read it with
 * wb_map_register_decode_string(), not wb_map_register_decode().  Any
 * thread.  Since ABI 1.1.
 */
gboolean wb_map_register_is_string(const WbMapRegister *reg);
/**
 * wb_map_register_get_range:
 * @reg: a register
 * @min: (out) (optional): the lowest value a write may set, in its unit
 * @max: (out) (optional): the highest
 *
 * Returns: %TRUE when the map declares a range (min, max) for this
 * writable register; the type's limits apply in any case
 * (wb_map_register_encode()).  Since: 1.1
 */
gboolean wb_map_register_get_range(const WbMapRegister *reg, double *min, double *max);
/** wb_map_register_reads_with: Returns: %TRUE when function code @function reads it. */
gboolean wb_map_register_reads_with(const WbMapRegister *reg, guint function);
/** wb_map_register_writes_with: Returns: %TRUE when function code @function writes it. */
gboolean wb_map_register_writes_with(const WbMapRegister *reg, guint function);
/** wb_map_register_get_direction: Returns: its WbMapDirection, or -1 (see the map's). */
int wb_map_register_get_direction(const WbMapRegister *reg);
/**
 * wb_map_register_get_value_name:
 * Returns: (transfer none) (nullable): an enum register's name for @value,
 * or a bitfield's name for bit @value; %NULL when none is declared.
 */
const char *wb_map_register_get_value_name(const WbMapRegister *reg, guint64 value);

/**
 * wb_map_register_encode:
 * @reg: a register
 * @value: the value in the register's unit
 * @words: (out caller-allocates): the wire words, in address order;
 *   wb_map_register_get_size() of them are written (at most 4 for numbers)
 * @error: return location for an error
 *
 * Encodes with the register's scale, offset, type, word order and byte
 * order: raw = (value - offset) / scale, rounded to the nearest integer for
 * integer types.  A value that does not fit the type (or is not finite; an
 * enum value not listed; a bitfield bit not named; a 64-bit integer beyond
 * 2^53, which a double cannot hold exactly) is an error
 * (WB_PLUGIN_ERROR_INVALID_CONFIG), never a silent wrap.  Strings go
 * through wb_map_register_encode_string().  Any thread.
 */
gboolean wb_map_register_encode(const WbMapRegister *reg, double value, guint16 *words, GError **error);

/**
 * wb_map_register_decode:
 * @reg: a register
 * @words: wb_map_register_get_size() wire words
 *
 * Returns: the value in the register's unit: raw * scale + offset (NaN for
 * a string register).  Any thread.
 */
double wb_map_register_decode(const WbMapRegister *reg, const guint16 *words);

/**
 * wb_map_register_decode_string:
 * @reg: a string register
 * @words: wb_map_register_get_size() wire words
 *
 * Two bytes per register (the register's byte order), up to the first NUL,
 * trailing spaces removed, made valid UTF-8.
 *
 * Returns: (transfer full): the text.  Any thread.
 */
char *wb_map_register_decode_string(const WbMapRegister *reg, const guint16 *words);

/**
 * wb_map_register_encode_string:
 * Encodes @text into a string register, NUL-padded.  Text longer than the
 * register is an error, never truncated.  Any thread.
 */
gboolean wb_map_register_encode_string(const WbMapRegister *reg, const char *text, guint16 *words,
                                       GError **error);

/* ---- Read and write planning ------------------------------------------- */

/**
 * WbReadPlan: the requests that read a set of registers in the least time.
 *
 * The time of a request is modelled as
 *   (request bytes + response bytes) * 11 bits / baud + 2 * t3.5
 *   + the map's turnaround + the map's min-delay
 * (RTU framing; t3.5 is 3.5 characters at up to 19200 baud and 1.75 ms
 * above, per the Modbus serial line specification V1.02; baud 0 means TCP,
 * where only turnaround and min-delay count, and the bytes break ties).  A
 * request spans unwanted registers only where the map says they can be
 * read through (blocks, outside no-read ranges), never exceeds the map's
 * max-read, and uses a function code every register in it allows.  The
 * plan is optimal under this model.
 */
typedef struct _WbReadPlan WbReadPlan;

/**
 * wb_read_plan_new:
 * @map: the map
 * @wanted: (array length=n_wanted): registers of @map to read (readable)
 * @n_wanted: how many
 * @baud: the line's baud rate, or 0 for Modbus TCP
 * @error: return location for an error
 *
 * Returns: (transfer full) (nullable): the plan, or %NULL with @error set
 * when a register cannot be read.  Any thread.
 */
WbReadPlan *wb_read_plan_new(const WbMap *map, const WbMapRegister *const *wanted, guint n_wanted, guint baud,
                             GError **error);
void wb_read_plan_free(WbReadPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbReadPlan, wb_read_plan_free)
/** wb_read_plan_get_n_requests: Returns: the number of requests. */
guint wb_read_plan_get_n_requests(const WbReadPlan *plan);
/**
 * wb_read_plan_get_request:
 * @plan: a plan
 * @index: 0..n_requests-1
 * @function: (out): the function code (1, 2, 3 or 4)
 * @address: (out): the first wire address
 * @count: (out): registers (or bits) to read
 */
void wb_read_plan_get_request(const WbReadPlan *plan, guint index, guint *function, guint *address, guint *count);
/** wb_read_plan_get_cycle_time: Returns: the modelled time of all the requests, seconds. */
double wb_read_plan_get_cycle_time(const WbReadPlan *plan);

/**
 * wb_modbus_request_time:
 * @map: the map (for turnaround and min-delay)
 * @function: 1..4
 * @count: registers (or bits)
 * @baud: baud rate, or 0 for TCP
 *
 * Returns: the modelled time of one read request, seconds (see WbReadPlan).
 */
double wb_modbus_request_time(const WbMap *map, guint function, guint count, guint baud);

/**
 * WbWritePlan: the requests that write a set of registers without touching
 * any other: contiguous runs of wanted registers only, split at max-write
 * and never inside a register; FC16 (FC15 for coils) for a register that
 * allows it, else FC06 (FC05) one register at a time.
 */
typedef struct _WbWritePlan WbWritePlan;

/** wb_write_plan_new: Returns: (transfer full) (nullable): the plan, or %NULL with @error set
 * when a register cannot be written.  Any thread. */
WbWritePlan *wb_write_plan_new(const WbMap *map, const WbMapRegister *const *regs, guint n_regs, GError **error);
void wb_write_plan_free(WbWritePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbWritePlan, wb_write_plan_free)
guint wb_write_plan_get_n_requests(const WbWritePlan *plan);
/** wb_write_plan_get_request: @function (5, 6, 15 or 16), first @address and @count of request @index. */
void wb_write_plan_get_request(const WbWritePlan *plan, guint index, guint *function, guint *address, guint *count);

/* ---- Modbus masters: ports and devices ----------------------------------- */

/**
 * WbModbusDevice: one Modbus device (a unit id) on a port, owned by an
 * instance.
 *
 * A port is a physical line, a serial device or a TCP endpoint, owned by
 * the host and shared by every instance that names it: instances naming
 * the same serial device (compared after realpath(), so a
 * /dev/serial/by-id/ link and its /dev/ttyUSB0 are one port) or the same
 * host:port share one.  Their line settings (transport, baud, parity,
 * data and stop bits, rs485) must agree; when they do not, every instance
 * on the port is refused at load with an error naming all their files.
 *
 * One worker thread per port runs the requests: one at a time, taking the
 * devices in turn (a request of each ready device before a second of any),
 * never sooner than the map's min-delay after the same device's last
 * answer, with the device's timeout and retries.  Results come back on the
 * main context.  A serial port is opened with TIOCEXCL and refused when it
 * cannot be locked (another program has it); a port that fails (an
 * unplugged USB adapter) is closed and reopened every reopen-delay until it
 * returns.
 *
 * A device whose jobs get no answer at all disconnect-after times in a row
 * is disconnected: its jobs then fail at once with
 * WB_MODBUS_STATUS_DISCONNECTED, except one every backoff, which probes it (a
 * Growatt inverter sleeps at night).  The first answer reconnects it.
 * Within a job the first request without an answer ends the job (the rest
 * are WB_MODBUS_STATUS_SKIPPED): a dead device costs its neighbours one timeout
 * per cycle, not one per request.
 *
 * After jobs, at most once a second and whenever the device connects or
 * disconnects, the host publishes the device's health under the owning
 * instance: modbus/requests, modbus/timeout/errors, modbus/crc/errors,
 * modbus/exception/errors, modbus/exception-NN/errors (per exception code,
 * once one was answered: exception-02 is "illegal data address"),
 * modbus/other/errors (counters since start),
 * modbus/latency (s, the job's mean request-to-answer time) and
 * modbus/connected (1 or 0).
 *
 * Since: 1.1
 */
typedef struct _WbModbusDevice WbModbusDevice;

/**
 * WbModbusJob: requests to run on one device, in order, and their results.
 * Since: 1.1
 */
typedef struct _WbModbusJob WbModbusJob;

/**
 * WbModbusStatus: the outcome of one request of a job.
 * @WB_MODBUS_STATUS_OK: answered; for a read, the words are available.
 * @WB_MODBUS_STATUS_TIMEOUT: no answer within the timeout, after every retry.
 * @WB_MODBUS_STATUS_CRC: only answers with a bad CRC (line noise, two masters).
 * @WB_MODBUS_STATUS_EXCEPTION: the device answered with an exception code.
 * @WB_MODBUS_STATUS_BAD_RESPONSE: an answer that does not match the request.
 * @WB_MODBUS_STATUS_PORT_ERROR: the port is not open or failed (the host reopens it).
 * @WB_MODBUS_STATUS_SKIPPED: not sent: an earlier request of the job got no answer.
 * @WB_MODBUS_STATUS_DISCONNECTED: not sent: the device is disconnected and waits
 *   for its next probe.
 * @WB_MODBUS_STATUS_CANCELLED: not sent: the device was freed first.
 */
typedef enum {
    WB_MODBUS_STATUS_OK = 0,
    WB_MODBUS_STATUS_TIMEOUT,
    WB_MODBUS_STATUS_CRC,
    WB_MODBUS_STATUS_EXCEPTION,
    WB_MODBUS_STATUS_BAD_RESPONSE,
    WB_MODBUS_STATUS_PORT_ERROR,
    WB_MODBUS_STATUS_SKIPPED,
    WB_MODBUS_STATUS_DISCONNECTED,
    WB_MODBUS_STATUS_CANCELLED,
} WbModbusStatus;

/**
 * WB_MODBUS_DEVICE_OPTIONS_PREFIXED:
 * @p: a string literal prefixed to every option name ("" or "meter-"), for
 *   a plugin that talks to two lines
 *
 * The option specs wb_modbus_device_new() reads.  Line settings left out
 * default to the map's factory settings (its serial key), else 9600 8N1.
 */
#define WB_MODBUS_DEVICE_OPTIONS_PREFIXED(p)                                                         \
    {.name = p "transport", .type = WB_OPTION_ENUM, .default_value = "rtu",                          \
     .values = (const char *const[]){"rtu", "tcp", "rtu-over-tcp", NULL},                            \
     .help = "rtu: Modbus RTU on a serial line (" p "device); tcp: Modbus TCP (" p "host); "          \
             "rtu-over-tcp: RTU frames through a TCP-to-RS485 converter (" p "host)"},                \
    {.name = p "device", .type = WB_OPTION_STRING,                                                   \
     .help = "rtu: the serial device, preferably /dev/serial/by-id/... (stable across reboots)"},     \
    {.name = p "host", .type = WB_OPTION_STRING,                                                     \
     .help = "tcp, rtu-over-tcp: HOST or HOST:PORT of the device or converter (port 502 by default)"}, \
    {.name = p "baud", .type = WB_OPTION_INT, .min = 300, .max = 921600, .unit = "bit/s",            \
     .help = "rtu: line speed; default: the map's"},                                                 \
    {.name = p "parity", .type = WB_OPTION_ENUM, .values = (const char *const[]){"none", "even", "odd", NULL}, \
     .help = "rtu: parity; default: the map's"},                                                     \
    {.name = p "data-bits", .type = WB_OPTION_INT, .min = 7, .max = 8, .help = "rtu: data bits; default: the map's"}, \
    {.name = p "stop-bits", .type = WB_OPTION_INT, .min = 1, .max = 2, .help = "rtu: stop bits; default: the map's"}, \
    {.name = p "rs485", .type = WB_OPTION_ENUM, .default_value = "none",                             \
     .values = (const char *const[]){"none", "kernel", "rts", NULL},                                 \
     .help = "rtu: how the transceiver's driver is switched: none (an adapter that does it itself), " \
             "kernel (the driver's RS485 mode, TIOCSRS485), rts (RTS raised while sending)"},          \
    {.name = p "reopen-delay", .type = WB_OPTION_DURATION, .default_value = "5s", .min = 0.01,        \
     .max = 3600, .unit = "s", .help = "wait this long before reopening a port that failed or is missing"}, \
    {.name = p "unit-id", .type = WB_OPTION_INT, .min = 0, .max = 255,                               \
     .help = "the device's unit id (slave address): 1..247 on serial lines, 0..255 over Modbus TCP; " \
             "default: the map's factory address"},                                                  \
    {.name = p "timeout", .type = WB_OPTION_DURATION, .default_value = "500ms", .min = 0.001,         \
     .max = 60, .unit = "s", .help = "how long to wait for an answer to one request"},               \
    {.name = p "retries", .type = WB_OPTION_INT, .default_value = "1", .min = 0, .max = 10,           \
     .help = "how often a request without a valid answer is sent again"},                            \
    {.name = p "min-delay", .type = WB_OPTION_DURATION, .min = 0, .max = 60, .unit = "s",                 \
     .help = "the pause the device needs between requests; default: the map's (Growatt: 850 ms)"},  \
    {.name = p "disconnect-after", .type = WB_OPTION_INT, .default_value = "3", .min = 1, .max = 1000, \
     .help = "jobs without any answer before the device counts as disconnected"},                    \
    {.name = p "backoff", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.01,            \
     .max = 86400, .unit = "s", .help = "how often a disconnected device is probed"},                \
    {.name = p "trace", .type = WB_OPTION_BOOL, .default_value = "false",                             \
     .help = "log every request and answer in hex"}

/** WB_MODBUS_DEVICE_OPTIONS: WB_MODBUS_DEVICE_OPTIONS_PREFIXED("").  Since: 1.1 */
#define WB_MODBUS_DEVICE_OPTIONS WB_MODBUS_DEVICE_OPTIONS_PREFIXED("")

/**
 * wb_modbus_device_new:
 * @instance: the owning instance; its options (WB_MODBUS_DEVICE_OPTIONS)
 *   name the port and the device
 * @prefix: (nullable): the prefix the options were declared with, or %NULL
 * @map: the device's register map (for its unit id, line settings and
 *   min-delay; a reference is taken)
 * @error: return location for an error
 *
 * Registers the device with its port (created on first use, shared by
 * name).  Nothing is opened until the first job.  Call from create():
 * conflicting line settings between instances are found when all are
 * created.
 *
 * Returns: (transfer full) (nullable): the device, or %NULL with @error
 * set (WB_PLUGIN_ERROR_INVALID_CONFIG naming the file and key).  Freed with
 * wb_modbus_device_free() or when the instance stops.  Main context.
 * Since: 1.1
 */
WbModbusDevice *wb_modbus_device_new(WbInstance *instance, const char *prefix, WbMap *map, GError **error);

/**
 * wb_modbus_device_free:
 * @device: (nullable): a device
 *
 * Cancels its jobs (their callbacks are not called): the queued ones, and
 * the one on the line after its request in progress; except those marked
 * with wb_modbus_job_set_run_at_stop(), which run first.  This waits for
 * the request in progress and for those jobs, at most their timeouts (plus
 * the port's reopen delay and 1 s when the line must be reopened).  Main
 * context.  Since: 1.1
 */
void wb_modbus_device_free(WbModbusDevice *device);

/** wb_modbus_device_is_connected: Returns: %FALSE while the device is disconnected. Since: 1.1 */
gboolean wb_modbus_device_is_connected(const WbModbusDevice *device);

/**
 * wb_modbus_device_get_label:
 * Returns: (transfer none): "unit 3 on /dev/ttyUSB0", for log messages.
 * Since: 1.1
 */
const char *wb_modbus_device_get_label(const WbModbusDevice *device);

/** wb_modbus_device_get_map: Returns: (transfer none): the device's map. Since: 1.1 */
const WbMap *wb_modbus_device_get_map(const WbModbusDevice *device);

/**
 * wb_modbus_job_new:
 * @device: a device
 *
 * Returns: (transfer full): an empty job; add requests, then submit it.
 * Main context.  Since: 1.1
 */
WbModbusJob *wb_modbus_job_new(WbModbusDevice *device);

/**
 * wb_modbus_job_add_read:
 * @job: a job not yet submitted
 * @function: 1, 2, 3 or 4
 * @address: the first wire address
 * @count: 1..125 registers (1..2000 bits for 1 and 2)
 *
 * Returns: the request's index in the job.  Since: 1.1
 */
guint wb_modbus_job_add_read(WbModbusJob *job, guint function, guint address, guint count);

/**
 * wb_modbus_job_add_read_plan:
 * Adds every request of @plan, in order.  Returns: the index of the first.
 * Since: 1.1
 */
guint wb_modbus_job_add_read_plan(WbModbusJob *job, const WbReadPlan *plan);

/**
 * wb_modbus_job_add_write:
 * @job: a job not yet submitted
 * @function: 5, 6, 15 or 16
 * @address: the first wire address
 * @count: registers (or coils) to write: 1 for 5 and 6
 * @words: (array length=count): the values, one word per register (0 or 1
 *   per coil); copied
 *
 * Returns: the request's index in the job.  Since: 1.1
 */
guint wb_modbus_job_add_write(WbModbusJob *job, guint function, guint address, guint count, const guint16 *words);

/**
 * wb_modbus_job_set_run_at_stop:
 * Marks the job to run even when its device is freed first (a fallback
 * written as the daemon stops).  Since: 1.1
 */
void wb_modbus_job_set_run_at_stop(WbModbusJob *job);

/**
 * WbModbusJobFunc:
 * @job: the finished job; valid only during the call
 * @user_data: as given to wb_modbus_job_submit()
 *
 * Called on the main context once the job has run (or failed at once),
 * unless its device was freed first.
 */
typedef void (*WbModbusJobFunc)(WbModbusJob *job, gpointer user_data);

/**
 * wb_modbus_job_submit:
 * @job: (transfer full): the job
 * @func: (nullable): called when it is done
 * @user_data: for @func
 * @destroy: (nullable): frees @user_data once the job is gone, whether
 *   @func was called or not (a cancelled job)
 *
 * Queues the job on its device's port.  Main context.  Since: 1.1
 */
void wb_modbus_job_submit(WbModbusJob *job, WbModbusJobFunc func, gpointer user_data, GDestroyNotify destroy);

/** wb_modbus_job_get_n_requests: Returns: the number of requests. Since: 1.1 */
guint wb_modbus_job_get_n_requests(const WbModbusJob *job);

/**
 * wb_modbus_job_get_status:
 * @job: a finished job
 * @index: a request index
 * @exception_code: (out) (optional): for WB_MODBUS_STATUS_EXCEPTION, the code
 *   (2: illegal data address, 4: device failure, ...)
 *
 * Returns: the request's outcome.  Since: 1.1
 */
WbModbusStatus wb_modbus_job_get_status(const WbModbusJob *job, guint index, guint *exception_code);

/**
 * wb_modbus_job_get_words:
 * @job: a finished job
 * @index: a read request that succeeded
 *
 * Returns: (transfer none) (array): the words read, in address order (one
 * word, 0 or 1, per coil or discrete input), as many as the request asked
 * for; %NULL when the request did not succeed.  Since: 1.1
 */
const guint16 *wb_modbus_job_get_words(const WbModbusJob *job, guint index);

/**
 * wb_modbus_job_get_time:
 * Returns: when the last answer arrived, in g_get_real_time() units (0
 * when none did): the measurement time of the values read.  Since: 1.1
 */
gint64 wb_modbus_job_get_time(const WbModbusJob *job);

/**
 * wb_modbus_job_is_first_answer:
 * Returns: %TRUE when this job got the device's first answer since it was
 * created or reconnected (read what you read once per connection).
 * Since: 1.1
 */
gboolean wb_modbus_job_is_first_answer(const WbModbusJob *job);

/** wb_modbus_status_to_string: Returns: (transfer none): "timeout", "exception", ... Since: 1.1 */
const char *wb_modbus_status_to_string(WbModbusStatus status);

/* ---- Host-owned Modbus server ----------------------------------------- */

/**
 * WbModbusServerMode: how the server answers reads (staged, then applied by
 * wb_modbus_server_commit()).
 * @WB_MODBUS_SERVE: answer from the committed image.
 * @WB_MODBUS_SILENT: answer nothing (the master sees a timeout, as with a
 *   meter that lost power); requests are still read and discarded, and the
 *   input is flushed when answering resumes.
 * @WB_MODBUS_EXCEPTION: answer every request with the staged exception code
 *   (4, "server device failure", is what a meter reports when it has no
 *   data).
 */
typedef enum {
    WB_MODBUS_SERVE = 0,
    WB_MODBUS_SILENT = 1,
    WB_MODBUS_EXCEPTION = 2,
} WbModbusServerMode;

/**
 * WB_MODBUS_SERVER_OPTIONS: the option specs wb_modbus_server_new() reads;
 * put them in a plugin's option table.
 *
 * Unit ids: on RTU a request for another unit id gets no answer (the line
 * is shared) and broadcasts (unit id 0) are neither answered nor applied;
 * on TCP a request for another unit id is answered with exception 0x0B
 * (gateway target device failed to respond).
 */
#define WB_MODBUS_SERVER_OPTIONS                                                                   \
    {.name = "transport", .type = WB_OPTION_ENUM, .default_value = "rtu",                          \
     .values = (const char *const[]){"rtu", "tcp", NULL},                                          \
     .help = "rtu: Modbus RTU on a serial line (device, baud, ...); tcp: Modbus TCP (bind, port)"}, \
    {.name = "device", .type = WB_OPTION_STRING,                                                   \
     .help = "rtu: the serial device, preferably /dev/serial/by-id/..."},                          \
    {.name = "baud", .type = WB_OPTION_INT, .default_value = "9600", .min = 300, .max = 921600,    \
     .unit = "bit/s", .help = "rtu: line speed"},                                                  \
    {.name = "parity", .type = WB_OPTION_ENUM, .default_value = "none",                            \
     .values = (const char *const[]){"none", "even", "odd", NULL}, .help = "rtu: parity"},         \
    {.name = "data-bits", .type = WB_OPTION_INT, .default_value = "8", .min = 7, .max = 8,         \
     .help = "rtu: data bits"},                                                                    \
    {.name = "stop-bits", .type = WB_OPTION_INT, .default_value = "1", .min = 1, .max = 2,         \
     .help = "rtu: stop bits"},                                                                    \
    {.name = "reopen-delay", .type = WB_OPTION_DURATION, .default_value = "5s", .min = 0.01,       \
     .max = 3600, .unit = "s", .help = "rtu: wait this long before reopening a serial device that failed"}, \
    {.name = "unit-id", .type = WB_OPTION_INT, .min = 1, .max = 247,                               \
     .help = "The Modbus unit id (slave address) served; default: the map's factory address"},    \
    {.name = "bind", .type = WB_OPTION_STRING, .default_value = "127.0.0.1",                       \
     .help = "tcp: the IPv4 address to listen on (0.0.0.0 for every interface)"},                 \
    {.name = "port", .type = WB_OPTION_INT, .default_value = "502", .min = 0, .max = 65535,        \
     .help = "tcp: the port to listen on (0 picks a free one, logged at start)"},                  \
    {.name = "max-clients", .type = WB_OPTION_INT, .default_value = "4", .min = 1, .max = 64,      \
     .help = "tcp: clients served at once; more are refused"},                                     \
    {.name = "idle-timeout", .type = WB_OPTION_DURATION, .default_value = "60s", .min = 0.01,      \
     .max = 86400, .unit = "s", .help = "tcp: drop a client that sends nothing for this long"}

/**
 * wb_modbus_server_new:
 * @instance: the owning instance; its options (WB_MODBUS_SERVER_OPTIONS)
 *   configure the transport
 * @map: the register layout to serve (a reference is taken)
 * @error: return location for an error
 *
 * Creates a server whose image holds the map's registers, each at its
 * constant value, declared default or 0; nothing is opened yet.  The
 * server belongs to the instance and is freed when it stops.
 *
 * Returns: (transfer none) (nullable): the server, or %NULL with @error set
 * (WB_PLUGIN_ERROR_INVALID_CONFIG, naming the key) when the options do not
 * fit together (rtu without a device).  Main context.
 */
WbModbusServer *wb_modbus_server_new(WbInstance *instance, WbMap *map, GError **error);

/**
 * wb_modbus_server_start:
 * Opens the serial device or TCP listener and starts the serving thread.
 * A serial device that cannot be opened yet is retried every reopen-delay
 * (an adapter plugged in later is picked up); a TCP address that cannot be
 * bound is an error (WB_PLUGIN_ERROR_IO).  Main context.
 */
gboolean wb_modbus_server_start(WbModbusServer *server, GError **error);

/** wb_modbus_server_free: stops the thread (joined), closes the port. */
void wb_modbus_server_free(WbModbusServer *server);

/** wb_modbus_server_get_map: Returns: (transfer none): the map served. */
const WbMap *wb_modbus_server_get_map(WbModbusServer *server);

/** wb_modbus_server_get_unit_id: Returns: the unit id served. */
guint wb_modbus_server_get_unit_id(WbModbusServer *server);

/** wb_modbus_server_get_port: Returns: tcp: the port listened on (after start); 0 for rtu. */
guint wb_modbus_server_get_port(WbModbusServer *server);

/**
 * wb_modbus_server_set_value:
 * @server: a server
 * @reg: a register of the server's map
 * @value: the value in the register's unit
 * @error: return location for an error
 *
 * Encodes @value into the staging image (see wb_map_register_encode()).
 * Nothing is served until wb_modbus_server_commit().  Main context.
 */
gboolean wb_modbus_server_set_value(WbModbusServer *server, const WbMapRegister *reg, double value,
                                    GError **error);

/** wb_modbus_server_set_mode: stages the answering mode (and the exception
 * code for WB_MODBUS_EXCEPTION, 1..11); applied at commit.  Main context. */
void wb_modbus_server_set_mode(WbModbusServer *server, WbModbusServerMode mode, guint exception_code);

/**
 * wb_modbus_server_set_valid_until:
 * @server: a server
 * @deadline_us: a g_get_monotonic_time() instant, or 0 for no deadline
 * @mode: what the serving thread does after @deadline_us (not
 *   WB_MODBUS_SERVE)
 * @exception_code: for WB_MODBUS_EXCEPTION, 1..11
 *
 * Stages a deadline for the image: if no commit comes before it (the main
 * loop stalled), the serving thread switches to @mode on its own, so an
 * image never outlives its data's freshness.  Applied at commit; every
 * commit replaces it.  Main context.
 */
void wb_modbus_server_set_valid_until(WbModbusServer *server, gint64 deadline_us, WbModbusServerMode mode,
                                      guint exception_code);

/**
 * wb_modbus_server_commit:
 * Publishes the staging image and mode to the serving thread in one step:
 * a reply never mixes two commits.  Main context.
 */
void wb_modbus_server_commit(WbModbusServer *server);

/**
 * WbModbusWriteFunc:
 * @server: the server
 * @reg: the register a master wrote
 * @value: the decoded value, already checked against the map's range
 * @user_data: as given
 *
 * Called on the main context for each register of an accepted write.
 */
typedef void (*WbModbusWriteFunc)(WbModbusServer *server, const WbMapRegister *reg, double value,
                                  gpointer user_data);

/**
 * wb_modbus_server_set_write_func:
 * Without a write function the server stores accepted writes in the image
 * (the master reads back what it wrote) and logs them.  With one, the
 * function decides.  Main context.
 */
void wb_modbus_server_set_write_func(WbModbusServer *server, WbModbusWriteFunc func, gpointer user_data);

G_END_DECLS
