/* venus-bus: which D-Bus a Venus OS plugin talks to, and a private
 * connection to it.  Compiled into victron-dbus and victron-dbus-reader.
 *
 * dbus = auto | system | session: "auto" is the session bus when
 * DBUS_SESSION_BUS_ADDRESS is set, else the system bus, as Victron's own
 * services decide (velib_python vedbus.py, dbusmonitor.py;
 * shared/reference/victron-dbus.md 1.5).  dbus-address, when given, is
 * used instead: e.g. tcp:host=venus.local,port=78, the GX's system bus
 * with ANONYMOUS authentication that Venus OS exposes when its
 * Services/InsecureDbusOverTcp setting is on (meta-victronenergy
 * system-insecure.conf). */
#pragma once

#include <wattbridge/plugin.h>

#include <gio/gio.h>

extern const char *const venus_bus_names[];

#define VENUS_BUS_OPTIONS                                                                                     \
    {.name = "dbus", .type = WB_OPTION_ENUM, .default_value = "auto", .values = venus_bus_names,             \
     .help = "auto: the session bus when DBUS_SESSION_BUS_ADDRESS is set, else the system bus (as Victron's " \
             "own services decide)"},                                                                         \
    {.name = "dbus-address", .type = WB_OPTION_STRING,                                                        \
     .help = "A D-Bus address to use instead of dbus, e.g. tcp:host=venus.local,port=78 (a GX's system bus "  \
             "when Venus OS exposes it on TCP)"},                                                             \
    {.name = "reconnect-delay", .type = WB_OPTION_DURATION, .default_value = "5s", .min = 0.05, .max = 3600, \
     .unit = "s", .help = "Wait this long before connecting to the bus again after it went away"}

typedef struct {
    GBusType type;  /* when address is NULL */
    char *address;  /* dbus-address, or NULL */
    char *label;    /* "system bus", "session bus", "D-Bus at tcp:..." for logs */
} VenusBus;

/* Reads the options of VENUS_BUS_OPTIONS. */
void venus_bus_init(VenusBus *bus, const WbConfig *config);
void venus_bus_clear(VenusBus *bus);

/* Starts connecting a private connection (never g_bus_get(): object paths
 * and match rules belong to a connection), flags AUTHENTICATION_CLIENT |
 * MESSAGE_BUS_CONNECTION.  @callback finishes with
 * g_dbus_connection_new_for_address_finish().  Returns FALSE with @error
 * when the bus has no address (no session bus, say); main context. */
gboolean venus_bus_connect(const VenusBus *bus, GCancellable *cancel, GAsyncReadyCallback callback,
                           gpointer user_data, GError **error);

/* The connection is gone: cancels what was started on it (@cancel) and
 * puts a fresh cancellable in its place for the next one.  Calls pending
 * on a closed connection fail with G_IO_ERROR_CLOSED, not CANCELLED; this
 * makes their callbacks see CANCELLED and leave the new connection alone. */
void venus_bus_renew_cancellable(GCancellable **cancel);
