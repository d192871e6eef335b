/* venus-bus: see venus-bus.h. */
#include "venus-bus.h"

const char *const venus_bus_names[] = {"auto", "system", "session", NULL};

void venus_bus_init(VenusBus *bus, const WbConfig *config)
{
    int choice = wb_config_get_enum(config, "dbus");
    bus->type = choice == 1 ? G_BUS_TYPE_SYSTEM
              : choice == 2 ? G_BUS_TYPE_SESSION
              : (g_getenv("DBUS_SESSION_BUS_ADDRESS") ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM);
    bus->address = g_strdup(wb_config_get_string(config, "dbus-address"));
    bus->label = bus->address ? g_strdup_printf("D-Bus at %s", bus->address)
                              : g_strdup(bus->type == G_BUS_TYPE_SYSTEM ? "system bus" : "session bus");
}

void venus_bus_clear(VenusBus *bus)
{
    g_clear_pointer(&bus->address, g_free);
    g_clear_pointer(&bus->label, g_free);
}

gboolean venus_bus_connect(const VenusBus *bus, GCancellable *cancel, GAsyncReadyCallback callback,
                           gpointer user_data, GError **error)
{
    g_autofree char *address =
        bus->address ? g_strdup(bus->address) : g_dbus_address_get_for_bus_sync(bus->type, cancel, error);
    if (!address)
        return FALSE;
    g_dbus_connection_new_for_address(address,
                                      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                          G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                      NULL, cancel, callback, user_data);
    return TRUE;
}

void venus_bus_renew_cancellable(GCancellable **cancel)
{
    if (!*cancel) /* stopping: already cancelled, none wanted */
        return;
    g_cancellable_cancel(*cancel);
    g_object_unref(*cancel);
    *cancel = g_cancellable_new();
}
