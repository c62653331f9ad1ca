import type { Command } from 'commander';
import { settingsFor, type ApiOptions, type CliContext } from '../context.js';

export function registerConfig(program: Command, ctx: CliContext): void {
  const config = program
    .command('config')
    .description("the CLI's settings: API URL, token, profiles");
  config
    .command('show')
    .description('print the API URL and token this CLI would use, and where each comes from')
    .option('--json', 'print JSON')
    .action((options: ApiOptions & { json?: boolean }) => {
      const s = settingsFor(options);
      // The token itself is never printed: only whether one is set and where it comes from.
      const view = {
        apiUrl: s.apiUrl,
        apiUrlFrom: s.apiUrlFrom,
        token: s.token === undefined ? null : '[set]',
        tokenFrom: s.tokenFrom,
        caFile: s.caFile ?? null,
        caFileFrom: s.caFileFrom,
        profile: s.profile ?? null,
        file: s.file,
      };
      if (options.json === true) return ctx.printJson(view);
      ctx.print(`api url  ${view.apiUrl}  (from ${view.apiUrlFrom})`);
      ctx.print(`token    ${view.token ?? '-'}  (from ${view.tokenFrom})`);
      ctx.print(`ca file  ${view.caFile ?? '-'}  (from ${view.caFileFrom})`);
      ctx.print(`profile  ${view.profile ?? '-'}`);
      ctx.print(`file     ${view.file}`);
    });
}
