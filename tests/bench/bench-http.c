/* Benchmark for the opendtu plugin.  Prints figures; judges nothing.
 * Run with: meson test -C build --benchmark --verbose
 *
 * 16 simulated Hoymiles inverters behind one OpenDTU (tests/tools/
 * http-device, F3: a summary, then ?inv= per inverter with new
 * statistics), each with new statistics every second, read at 1 Hz for a
 * minute, beside the same daemon and configuration with the plugin idle
 * (poll-interval 1 h: one read at start, then nothing), all running side
 * by side.  A third daemon follows the same inverters over the /livedata
 * websocket instead.  Reported: the daemon's CPU time per inverter update
 * above the idle one's, and each daemon's peak RSS (VmHWM). */
#include "wbt.h"

#include <stdio.h>

#define INVERTERS 16

static WbtHttpDevice *device_start(gboolean websocket)
{
    const char *args[INVERTERS + 8];
    char serials[INVERTERS][16];
    guint n = 0;
    args[n++] = "opendtu";
    args[n++] = "--stats-ms=1000";
    if (websocket)
        args[n++] = "--websocket";
    for (guint i = 0; i < INVERTERS; i++) {
        g_snprintf(serials[i], sizeof serials[i], "1141829407%02u", i);
        args[n++] = serials[i];
    }
    args[n] = NULL;
    return wbt_http_device_startv(args);
}

static WbtDaemon *daemon_for(WbtScratch *s, WbtHttpDevice *h, const char *poll, const char *websocket)
{
    g_free(wbt_scratch_conf(s, "20-dtu.conf",
                            "[dtu]\nplugin = opendtu\nurl = %s\npoll-interval = %s\ntimeout = 2s\nwebsocket = %s\n",
                            h->url, poll, websocket));
    return wbt_daemon_start_quiet(s);
}

int main(void)
{
    const guint seconds = 60;
    WbtHttpDevice *polled = device_start(FALSE), *pushed = device_start(TRUE), *quiet = device_start(FALSE);
    g_autoptr(WbtScratch) s1 = wbt_scratch_new();
    g_autoptr(WbtScratch) s2 = wbt_scratch_new();
    g_autoptr(WbtScratch) s3 = wbt_scratch_new();
    WbtDaemon *poll = daemon_for(s1, polled, "1s", "off");
    WbtDaemon *ws = daemon_for(s2, pushed, "1s", "auto");
    WbtDaemon *idle = daemon_for(s3, quiet, "1h", "off");
    /* settle: started, first answers in */
    wbt_sleep(3000);
    double cpu0[3] = {wbt_cpu_us(wbt_daemon_pid(poll)), wbt_cpu_us(wbt_daemon_pid(ws)), wbt_cpu_us(wbt_daemon_pid(idle))};
    guint details0 = wbt_daemon_count_log(polled->proc, "^GET /api/livedata/status\\?inv=");
    guint frames0 = wbt_daemon_count_log(pushed->proc, "^frame ");
    wbt_sleep(seconds * 1000);
    double cpu1[3] = {wbt_cpu_us(wbt_daemon_pid(poll)), wbt_cpu_us(wbt_daemon_pid(ws)), wbt_cpu_us(wbt_daemon_pid(idle))};
    guint details = wbt_daemon_count_log(polled->proc, "^GET /api/livedata/status\\?inv=") - details0;
    guint frames = wbt_daemon_count_log(pushed->proc, "^frame ") - frames0;
    guint polls = wbt_daemon_count_log(polled->proc, "^GET /api/livedata/status$");
    double hwm[3] = {wbt_proc_status_kib(wbt_daemon_pid(poll), "VmHWM:"),
                     wbt_proc_status_kib(wbt_daemon_pid(ws), "VmHWM:"),
                     wbt_proc_status_kib(wbt_daemon_pid(idle), "VmHWM:")};
    wbt_daemon_stop(poll);
    wbt_daemon_stop(ws);
    wbt_daemon_stop(idle);
    wbt_http_device_stop(polled);
    wbt_http_device_stop(pushed);
    wbt_http_device_stop(quiet);

    double idle_cpu = cpu1[2] - cpu0[2];
    printf("OpenDTU: %u inverters with new statistics every second, %u s\n", INVERTERS, seconds);
    printf("%-52s %12s %12s %12s\n", "", "polling 1 Hz", "websocket", "idle");
    printf("%-52s %12u %12u %12s\n", "inverter updates (?inv= answers / frames)", details, frames, "-");
    printf("%-52s %12.1f %12.1f %12.1f\n", "daemon CPU (ms)", (cpu1[0] - cpu0[0]) / 1000, (cpu1[1] - cpu0[1]) / 1000,
           idle_cpu / 1000);
    printf("%-52s %12.1f %12.1f %12s\n", "CPU per inverter update above idle (us)",
           details ? (cpu1[0] - cpu0[0] - idle_cpu) / details : 0, frames ? (cpu1[1] - cpu0[1] - idle_cpu) / frames : 0,
           "-");
    printf("%-52s %12.0f %12.0f %12.0f\n", "peak RSS, VmHWM (KiB)", hwm[0], hwm[1], hwm[2]);
    printf("(%u summary polls in all; a frame repeated without new statistics counts as an update here)\n", polls);
    return 0;
}
