import { EXIT, main } from './program.js';

export { buildProgram, EXIT, main } from './program.js';

// Long-running commands (up) keep the process alive through their servers and timers.
const code = await main(process.argv);
if (code !== EXIT.ok) process.exit(code);
else process.exitCode = 0;
