/* libwattbridge internals shared by the host sources, the wattbridge
 * executable and the unit tests.  Not installed, not part of the plugin ABI:
 * the functions declared here are exported in the WB_PRIVATE symbol-version
 * node only so that the executable and the tests can reach them. */
#pragma once

#include <glib.h>
#include <gmodule.h>

#include <wattbridge/plugin.h>

G_BEGIN_DECLS

/* ---- Logging ---------------------------------------------------------- */

/* Installs the log writer: stderr (or the journal), debug and info only when
 * verbose. */
void wb_log_setup(gboolean verbose);

/* ---- Point store ------------------------------------------------------ */

typedef struct _WbPointStore WbPointStore;

WbPointStore *wb_point_store_new(void);
void wb_point_store_free(WbPointStore *store);
/* Looks a point up by its full name; NULL when it was never published. */
const WbPoint *wb_point_store_lookup(WbPointStore *store, const char *name);
/* MQTT-style match of a point name against a pattern. */
gboolean wb_point_pattern_match(const char *pattern, const char *name);

/* ---- GKeyFile texts with line numbers -------------------------------- */

typedef struct {
    char *name;
    int line;              /* of the [header] */
    GPtrArray *keys;       /* char*: keys in file order */
    GHashTable *key_lines; /* key -> GINT_TO_POINTER(line) */
    gboolean broken;       /* a repeated key, or a bad line inside it */
} WbKfGroup;

typedef struct {
    GPtrArray *groups;     /* WbKfGroup*, in file order */
    GPtrArray *errors;     /* char*: "path:line: ..." */
} WbKfScan;

/* Scans @text (read from @path) for groups and keys with their lines. */
WbKfScan *wb_kf_scan(const char *path, const char *text);
void wb_kf_scan_free(WbKfScan *scan);
WbKfGroup *wb_kf_scan_find(WbKfScan *scan, const char *name);
int wb_kf_group_key_line(const WbKfGroup *group, const char *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbKfScan, wb_kf_scan_free)

/* ---- conf.d ----------------------------------------------------------- */

/* One [section] of a conf.d file: an instance. */
typedef struct {
    char *name;
    char *file;      /* the path it was read from */
    int line;        /* line of the [section] header */
    GKeyFile *keyfile; /* shared by the sections of one file */
    GPtrArray *keys; /* char*: keys in file order */
    GHashTable *key_lines; /* key -> GINT_TO_POINTER(line) */
    gboolean broken; /* a problem disables the instance (already reported) */
} WbConfdSection;

typedef struct {
    GPtrArray *sections; /* WbConfdSection*, in load order */
    GPtrArray *errors;   /* char*: messages, each naming file and line */
    GPtrArray *files;    /* char*: files read, in order */
    GPtrArray *masked;   /* char*: names masked by a link to /dev/null */
} WbConfd;

/* Reads every *.conf in @dirs (lowest precedence first): a file in a later
 * directory replaces one of the same name in an earlier one, a link to
 * /dev/null masks it; files are read in name order across the directories.
 * Never fails as a whole: problems are listed in ->errors and the sections
 * concerned are marked broken. */
WbConfd *wb_confd_load(const char *const *dirs);
void wb_confd_free(WbConfd *confd);
WbConfdSection *wb_confd_find(WbConfd *confd, const char *name);

/* ---- Options ---------------------------------------------------------- */

/* Keys the host owns in every section. */
#define WB_KEY_PLUGIN "plugin"
#define WB_KEY_ENABLED "enabled"

/* Validates @section against @specs (the host's copy of a plugin's option
 * table, ended by a NULL name).  Returns the options, or NULL with @error
 * holding one line per problem, each naming file, line, section and key. */
WbConfig *wb_config_new(const WbConfdSection *section, const WbOptionSpec *specs,
                        GError **error);
void wb_config_free(WbConfig *config);
/* Parses a default value the way a user's value is parsed; for the loader's
 * checks of a plugin's option table. */
gboolean wb_option_check_value(const WbOptionSpec *spec, const char *value, GError **error);
/* Formats one option for --describe. */
void wb_option_describe(const WbOptionSpec *spec, GString *out);
/* TRUE when the section says enabled = false (invalid values count as true
 * and are reported by wb_config_new()). */
gboolean wb_confd_section_disabled(const WbConfdSection *section);
gboolean wb_parse_duration(const char *text, gint64 *out_us);
/* A decimal or 0x-prefixed integer, optionally signed, nothing else. */
gboolean wb_parse_int(const char *text, gint64 *out);
/* A finite number (g_ascii_strtod, C locale), nothing else. */
gboolean wb_parse_double(const char *text, double *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbConfig, wb_config_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbConfd, wb_confd_free)

/* ---- Register maps ------------------------------------------------------ */

/* --import-csv: the map text for the CSV register table at @path, or NULL
 * with @error naming the CSV's lines. */
char *wb_map_import_csv(const char *path, GError **error);

/* ---- Plugins ---------------------------------------------------------- */

typedef struct {
    char *name;
    char *path;
    GModule *module;
    WbPluginDescriptor desc;  /* the plugin's descriptor, zero-extended */
    WbPluginOps ops;          /* its ops table, zero-extended */
    WbOptionSpec *options;    /* normalised copy, ended by a NULL name */
} WbPlugin;

/* Loads and checks the plugin file @path.  Refuses (with a message naming the
 * file and, for version problems, both ABI versions): a file that is not a
 * regular file, is group- or world-writable or owned by another user; one
 * without the entry symbol; a NULL or incomplete descriptor; another ABI
 * major or a newer minor; a name that does not match the file; a broken
 * option table. */
WbPlugin *wb_plugin_load(const char *path, GError **error);
void wb_plugin_free(WbPlugin *plugin);
/* Finds <name>.so in @dirs (first match wins). */
char *wb_plugin_find(const char *const *dirs, const char *name, GError **error);
/* Prints the descriptor and the options for --describe. */
char *wb_plugin_describe(const WbPlugin *plugin);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(WbPlugin, wb_plugin_free)

/* ---- Instances and the daemon ----------------------------------------- */

typedef struct _WbDaemon WbDaemon;

typedef struct {
    const char *const *config_dirs;  /* lowest precedence first */
    const char *const *plugin_dirs;  /* searched in order */
    const char *const *data_dirs;    /* searched in order */
    const char *state_dir;
    guint lag_interval_ms;           /* main-loop lag timer, 50 */
} WbDaemonSettings;

WbDaemon *wb_daemon_new(const WbDaemonSettings *settings);
void wb_daemon_free(WbDaemon *daemon);
/* Reads conf.d, loads plugins, validates and creates instances.  With
 * @check_only, also validates disabled instances and prints what would run
 * to @report.  Returns the number of problems found. */
guint wb_daemon_load(WbDaemon *daemon, gboolean check_only, GString *report);
/* Starts the created instances; returns how many run. */
guint wb_daemon_start(WbDaemon *daemon);
/* SIGHUP: re-reads conf.d.  When the new configuration validates (checked
 * in a daemon of its own first), stops the instances whose section is gone
 * or changed, and creates and starts the new and changed ones; the others
 * keep running without a gap.  Otherwise logs why and changes nothing.
 * Returns how many instances it started. */
guint wb_daemon_reload(WbDaemon *daemon);
/* Stops and destroys every instance, last started first. */
void wb_daemon_stop(WbDaemon *daemon);
WbPointStore *wb_daemon_get_points(WbDaemon *daemon);

/* The Modbus port registry: canonical line name -> port (wb-modbus-port.c). */
GHashTable *wb_daemon_get_ports(WbDaemon *daemon);
/* After every instance is created: ports whose users disagree on the line
 * settings, as pairs (instance name, message naming every file). */
GPtrArray *wb_modbus_ports_conflicts(GHashTable *registry);
/* The conf.d file an instance's options came from. */
const char *wb_config_get_file(const WbConfig *config);
/* The line @key is on (the section's line when it is not written). */
int wb_config_get_key_line(const WbConfig *config, const char *key);

/* Instance internals used by other host sources. */
WbPointStore *wb_instance_get_points(WbInstance *instance);
typedef void (*WbCleanupFunc)(gpointer data);
/* Registers @func to run when the instance stops (after the plugin's stop);
 * returns a handle for wb_instance_remove_cleanup(). */
gpointer wb_instance_add_cleanup(WbInstance *instance, WbCleanupFunc func, gpointer data);
void wb_instance_remove_cleanup(WbInstance *instance, gpointer handle);
gboolean wb_instance_is_running(WbInstance *instance);
/* A host-owned pseudo-instance ("host") for points the host publishes. */
WbInstance *wb_instance_new_internal(WbDaemon *daemon, const char *name);
void wb_instance_unref(WbInstance *instance);
/* Runs and forgets the instance's cleanups (the host does this at stop). */
void wb_instance_run_cleanups(WbInstance *instance);

G_END_DECLS
