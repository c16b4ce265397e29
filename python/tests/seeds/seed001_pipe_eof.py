# Seed 001_4c3e96c635851dad.txt, example 5: Pipe, the child reads until EOFError once every
# other copy of the sending end is closed.
# Changed: only the import line (names shmq). The test checks the 20 messages arrive.
from shmq import Process, Pipe


def senp(sendp, recvp):
    recvp.close()
    while True:
        try:
            msg = sendp.recv()
            print(msg)
        except EOFError:
            sendp.close()
            break


if __name__ == '__main__':
    sendp, recvp = Pipe()
    Process(target=senp, args=(sendp, recvp,)).start()
    sendp.close()
    for i in range(20):
        recvp.send('hello')
    recvp.close()
