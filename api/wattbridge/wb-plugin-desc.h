/* wattbridge plugin ABI: the descriptor a plugin exports.
 *
 * A plugin is a shared object <name>.so with exactly one exported symbol,
 * wb_plugin_get_descriptor(), which returns a constant WbPluginDescriptor.
 * Write it with WB_PLUGIN_DEFINE(); it fills in the sizes and the ABI
 * version the plugin was compiled against.
 *
 * The host refuses, with a message naming both versions, a plugin built for
 * another ABI major or a newer ABI minor; it also refuses one whose name does
 * not match its file name, one without the entry symbol, one whose
 * descriptor is incomplete, and a plugin file that is group- or
 * world-writable.
 */
#pragma once

#include <glib.h>
#include <gmodule.h>

#include <wattbridge/wb-types.h>
#include <wattbridge/wb-version.h>

G_BEGIN_DECLS

/**
 * WbOptionType: the value type of a declared option.
 * @WB_OPTION_STRING: any UTF-8 text.
 * @WB_OPTION_INT: a decimal or 0x-prefixed integer; checked against min/max.
 * @WB_OPTION_DOUBLE: a number; checked against min/max.
 * @WB_OPTION_BOOL: true/false (also yes/no, on/off, 1/0).
 * @WB_OPTION_DURATION: a time: a number of seconds, or a number with the
 *   suffix ms, s, min or h ("250ms", "1.5s", "2min"); min/max in seconds.
 * @WB_OPTION_ENUM: one of the spec's values.
 * @WB_OPTION_LIST: a ';'-separated list of strings (empty items dropped).
 * @WB_OPTION_POINT: a point name, with MQTT-style '+' and '#' wildcards.
 */
typedef enum {
    WB_OPTION_STRING = 1,
    WB_OPTION_INT = 2,
    WB_OPTION_DOUBLE = 3,
    WB_OPTION_BOOL = 4,
    WB_OPTION_DURATION = 5,
    WB_OPTION_ENUM = 6,
    WB_OPTION_LIST = 7,
    WB_OPTION_POINT = 8,
} WbOptionType;

/**
 * WbOptionFlags:
 * @WB_OPTION_REQUIRED: the key must be given (a default makes no sense).
 * @WB_OPTION_SECRET: never logged, never printed by --describe or
 *   --check-config (passwords).
 * @WB_OPTION_FAMILY: the name is a prefix ending in '.', e.g. "point.";
 *   every key "point.<anything>" is accepted and validated with this spec's
 *   type and range; wb_config_get_family() lists them.
 * @WB_OPTION_ONE_POINT: a WB_OPTION_POINT that names one point: no '+' or
 *   '#' (a setpoint, a wired input).  Since ABI 1.1.
 */
typedef enum {
    WB_OPTION_REQUIRED = 1u << 0,
    WB_OPTION_SECRET = 1u << 1,
    WB_OPTION_FAMILY = 1u << 2,
    WB_OPTION_ONE_POINT = 1u << 3,
} WbOptionFlags;

/**
 * WbOptionSpec: one declared option.  A plugin's table ends with an entry
 * whose @name is %NULL.
 * @name: the key, [a-z0-9-]+ (a family's prefix also ends with '.')
 * @type: a WbOptionType
 * @flags: WbOptionFlags
 * @default_value: the value used when the key is absent, written as a user
 *   would write it and parsed by the same code ("1883", "30s"); %NULL: no
 *   default (the getter reports the key as unset)
 * @min: lowest allowed value for INT, DOUBLE and DURATION (seconds)
 * @max: highest allowed value; the range applies only when min < max
 * @values: ENUM only: the allowed values, %NULL-terminated
 * @unit: the unit shown by --describe ("W", "s"), or %NULL
 * @help: one sentence for --describe
 */
typedef struct {
    const char *name;
    guint32 type;
    guint32 flags;
    const char *default_value;
    double min;
    double max;
    const char *const *values;
    const char *unit;
    const char *help;
} WbOptionSpec;

/**
 * WbPluginOps: an instance's lifecycle.  The host calls every op on its main
 * context, one instance at a time.  Set @struct_size to
 * sizeof (WbPluginOps).
 * @create: options are already validated.  Allocate the state, check options
 *   that depend on each other (report with wb_config_set_error()), open
 *   nothing and start no I/O.  On %FALSE, free everything and set @error.
 *   Required.
 * @start: open devices, subscribe, start timers.  On %FALSE the instance
 *   never ran; the host calls @stop and then @destroy.  Required.
 * @stop: synchronous and idempotent: stop I/O and join any thread the
 *   plugin started.  No callback reaches the plugin after it returns.
 *   Required.
 * @destroy: free the state (host handles it still holds may be freed here
 *   too).  Always paired with a successful @create, also for an instance
 *   that was never started (--check-config).  Afterwards the host frees
 *   whatever the instance still owns (timers, watches, subscriptions,
 *   Modbus servers).  Required.
 */
typedef struct {
    guint32 struct_size;
    gboolean (*create)(WbInstance *instance, const WbConfig *config, gpointer *state,
                       GError **error);
    gboolean (*start)(gpointer state, GError **error);
    void (*stop)(gpointer state);
    void (*destroy)(gpointer state);
} WbPluginOps;

/**
 * WbPluginDescriptor: what wb_plugin_get_descriptor() returns.  Fields are
 * only ever appended; @struct_size tells the host how many the plugin knows.
 * @struct_size: sizeof (WbPluginDescriptor) as the plugin's compiler saw it
 * @abi_major: WB_ABI_MAJOR the plugin was built with
 * @abi_minor: WB_ABI_MINOR the plugin was built with
 * @name: [a-z0-9-]+, equal to the file's base name (<name>.so)
 * @version: the plugin's own version, required
 * @description: one line, required
 * @license: an SPDX identifier, required
 * @roles: WbRole bits, at least one
 * @flags: reserved, 0
 * @option_size: sizeof (WbOptionSpec) as the plugin saw it
 * @options: the option table, ended by an entry with a %NULL name; may be %NULL
 * @ops: the lifecycle table, required
 */
typedef struct {
    guint32 struct_size;
    guint16 abi_major;
    guint16 abi_minor;
    const char *name;
    const char *version;
    const char *description;
    const char *license;
    guint32 roles;
    guint32 flags;
    guint32 option_size;
    const WbOptionSpec *options;
    const WbPluginOps *ops;
} WbPluginDescriptor;

/**
 * WbHostInfo: what the host tells a plugin when it asks for the descriptor,
 * so a plugin can decline (return %NULL from wb_plugin_get_descriptor())
 * a host that is too old for it.
 */
typedef struct {
    guint32 struct_size;
    guint16 abi_major;
    guint16 abi_minor;
    const char *version;
} WbHostInfo;

/** The name of the one symbol a plugin exports. */
#define WB_PLUGIN_ENTRY_SYMBOL "wb_plugin_get_descriptor"

/** Marks the entry point exported (plugins build with hidden visibility). */
#define WB_PLUGIN_EXPORT G_MODULE_EXPORT

/**
 * WB_PLUGIN_DEFINE:
 * @name_: the plugin name (a string literal equal to the file's base name)
 * @version_: the plugin version string
 * @description_: one line
 * @license_: SPDX identifier
 * @roles_: WbRole bits
 * @options_: a WbOptionSpec table ended by {NULL}, or %NULL
 * @ops_: a pointer to the plugin's WbPluginOps
 *
 * Defines the constant descriptor and the exported entry point.
 */
#define WB_PLUGIN_DEFINE(name_, version_, description_, license_, roles_, options_, ops_) \
    static const WbPluginDescriptor wb_plugin_descriptor_ = {                             \
        sizeof(WbPluginDescriptor), WB_ABI_MAJOR, WB_ABI_MINOR, (name_), (version_),         \
        (description_), (license_), (roles_), 0, sizeof(WbOptionSpec), (options_), (ops_)};  \
    WB_PLUGIN_EXPORT const WbPluginDescriptor *wb_plugin_get_descriptor(                    \
        const WbHostInfo *host);                                                            \
    WB_PLUGIN_EXPORT const WbPluginDescriptor *wb_plugin_get_descriptor(                    \
        const WbHostInfo *host)                                                             \
    {                                                                                       \
        (void)host;                                                                         \
        return &wb_plugin_descriptor_;                                                      \
    }

G_END_DECLS
