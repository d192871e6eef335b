/* wattbridge plugin ABI: opaque handles and constants.
 *
 * Only opaque handles cross the boundary between the host and a plugin;
 * every struct a plugin hands to the host carries its own size so it can
 * grow (see wb-plugin-desc.h).  Enumerations are plain integers on the
 * wire: struct fields that hold them are guint32, so their size never
 * depends on the compiler.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/** WbInstance: a configured use of a plugin (one [section] in conf.d). */
typedef struct _WbInstance WbInstance;
/** WbConfig: an instance's validated options, read with wb_config_get_*(). */
typedef struct _WbConfig WbConfig;
/** WbPoint: one named, timestamped value in the point store. */
typedef struct _WbPoint WbPoint;
/** WbBatch: points a source publishes together (one device message or poll). */
typedef struct _WbBatch WbBatch;
/** WbSubscription: a sink's or controller's interest in points. */
typedef struct _WbSubscription WbSubscription;
/** WbTimer: a main-loop timer owned by an instance. */
typedef struct _WbTimer WbTimer;
/** WbWatch: a main-loop file-descriptor watch owned by an instance. */
typedef struct _WbWatch WbWatch;
/** WbMap: a device register map loaded from data/devices/. */
typedef struct _WbMap WbMap;
/** WbMapRegister: one register (value) of a WbMap. */
typedef struct _WbMapRegister WbMapRegister;
/** WbModbusServer: a host-owned Modbus slave serving a register image. */
typedef struct _WbModbusServer WbModbusServer;

/**
 * WbPointState:
 * @WB_POINT_VALID: the value is a current measurement.
 * @WB_POINT_INVALID: the source says there is no value (an inverter asleep,
 *   a failure message, a retained message of unknown age).
 * @WB_POINT_STALE: nothing new arrived within the subscriber's max-age.
 *   Only subscriptions see this state; a publisher publishes valid or
 *   invalid.
 */
typedef enum {
    WB_POINT_VALID = 0,
    WB_POINT_INVALID = 1,
    WB_POINT_STALE = 2,
} WbPointState;

/**
 * WbRole: what a plugin does; a plugin may take several roles.
 * @WB_ROLE_SOURCE: publishes points read from a device.
 * @WB_ROLE_SINK: presents points to a device or protocol.
 * @WB_ROLE_CONTROLLER: subscribes to points and publishes setpoints.
 * @WB_ROLE_ACTUATOR: a source that also applies setpoints to its device.
 */
typedef enum {
    WB_ROLE_SOURCE = 1u << 0,
    WB_ROLE_SINK = 1u << 1,
    WB_ROLE_CONTROLLER = 1u << 2,
    WB_ROLE_ACTUATOR = 1u << 3,
} WbRole;

/**
 * WbLogLevel: severity of a wb_log() message.
 * @WB_LOG_ERROR: something failed and a device or instance is affected.
 * @WB_LOG_WARNING: something is wrong but the daemon copes.
 * @WB_LOG_NOTICE: a normal but significant event (connected, listening).
 * @WB_LOG_INFO: routine information.
 * @WB_LOG_DEBUG: detail, shown with --verbose only.
 */
typedef enum {
    WB_LOG_ERROR = 0,
    WB_LOG_WARNING = 1,
    WB_LOG_NOTICE = 2,
    WB_LOG_INFO = 3,
    WB_LOG_DEBUG = 4,
} WbLogLevel;

/**
 * WB_PLUGIN_ERROR: error domain for failures a plugin or the host reports
 * through GError.  Callers treat an unknown code as WB_PLUGIN_ERROR_FAILED,
 * so codes can be added in a minor release.
 */
#define WB_PLUGIN_ERROR (wb_plugin_error_quark())
GQuark wb_plugin_error_quark(void);

typedef enum {
    WB_PLUGIN_ERROR_FAILED = 0,
    WB_PLUGIN_ERROR_INVALID_CONFIG = 1,
    WB_PLUGIN_ERROR_NOT_SUPPORTED = 2,
    WB_PLUGIN_ERROR_IO = 3,
    WB_PLUGIN_ERROR_TIMEOUT = 4,
    WB_PLUGIN_ERROR_ABI = 5,
} WbPluginError;

G_END_DECLS
