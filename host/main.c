/* wattbridge: the daemon's entry point. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

#include <wattbridge/wb-version.h>

int main(int argc, char **argv)
{
    gboolean version = FALSE;
    GOptionEntry entries[] = {
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and the plugin ABI, then exit", NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) context = g_option_context_new("- bridge meters, inverters and batteries");
    g_autoptr(GError) error = NULL;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        fprintf(stderr, "wattbridge: %s\n", error->message);
        return 2;
    }
    if (version) {
        printf("wattbridge %s (plugin ABI %d.%d)\n", WB_VERSION, WB_ABI_MAJOR, WB_ABI_MINOR);
        return 0;
    }
    return 0;
}
