import type { Command } from 'commander';
import { print, printJson, settingsFor, type ApiOptions } from '../context.js';

export function registerConfig(program: Command): void {
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
      if (options.json === true) return printJson(view);
      print(`api url  ${view.apiUrl}  (from ${view.apiUrlFrom})`);
      print(`token    ${view.token ?? '-'}  (from ${view.tokenFrom})`);
      print(`ca file  ${view.caFile ?? '-'}  (from ${view.caFileFrom})`);
      print(`profile  ${view.profile ?? '-'}`);
      print(`file     ${view.file}`);
    });
}
