/*
 * main.c - the `tabib` command: reads the configuration, sets up logging and
 * hands over to srv_run(). Kept thin on purpose (h2o's src/main.c): all the
 * work is in the modules, so tests can drive them without a process.
 *
 * Exit status: 0 after a clean stop, 1 when the server could not start or
 * failed, 2 for a bad command line or configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "server.h"

extern char **environ;

int main(int argc, char **argv)
{
    struct srv_config cfg;
    enum srv_cli_action action;
    char err[SRV_CONFIG_ERR_MAX];
    if (argc > 1 && strcmp(argv[1], "user") == 0) {
        const char *data_dir = getenv("TABIB_DATA_DIR");
        return sig_user_command(argc - 1, argv + 1, data_dir ? data_dir : "data", stdout, stderr);
    }
    if (argc > 1 && strcmp(argv[1], "audit") == 0)
        return audit_main(argc - 2, argv + 2, stdout, stderr);
    if (srv_config_from_command_line(&cfg, argc, argv, 1, environ, &action, err, sizeof(err))) {
        fprintf(stderr, "tabib: %s\n", err);
        return 2;
    }
    if (action == SRV_CLI_HELP) {
        srv_config_print_help(stdout);
        return 0;
    }
    if (action == SRV_CLI_VERSION) {
        printf("tabib %s (commit %s)\n", TABIB_VERSION, TABIB_COMMIT);
        return 0;
    }
    struct base_logger *log =
        base_logger_new(cfg.log_file, cfg.log_format, cfg.log_level, err, sizeof(err));
    if (!log) {
        fprintf(stderr, "tabib: %s\n", err);
        return 2;
    }
    if (cfg.config_file[0])
        log_info(log, "server", "configuration read", LOG_STR("file", cfg.config_file));
    int status = srv_run(&cfg, log);
    base_logger_free(log);
    return status;
}
