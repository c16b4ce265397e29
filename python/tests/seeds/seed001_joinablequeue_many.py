# Seed 001_4c3e96c635851dad.txt, example 4: "任意多个生产者消费者的模型", 10 producers that join()
# a JoinableQueue, 5 daemon consumers.
# Changed: the import lines name shmq; sleeps of 1-2 s and 1-3 s are fiftieths of that.
# Prints kept (the daemon consumers are killed at exit: run with PYTHONUNBUFFERED=1 to see
# theirs); the test checks all 100 items are consumed.
import time, random
from shmq import Process
from shmq import JoinableQueue


def producer(name, food, q):
    for k in range(10):
        time.sleep(random.randint(1, 2) / 50)  # was: random.randint(1, 2)
        f = '{}生产的{}号{}'.format(name, k, food)
        q.put(f)
        print('{}生产了{}号{}'.format(name, k, food))
    q.join()  # 阻塞,直到一个队列中的所有数据全部处理完毕,等于一直在等着消费者拿了包子吃完才结束


def consumer(name, q):
    while True:
        food = q.get()
        print('\033[31m%s消费了%s\033[0m' % (name, food))
        time.sleep(random.randint(1, 3) / 50)  # was: random.randint(1, 3)
        q.task_done()  # 减少一个计数,get方法并不减少计数,put方法会增加计数.这样就会和生产者进程最后同步,大家一起结束.


if __name__ == '__main__':
    queue = JoinableQueue()
    p_list = []
    for i in range(10):
        p = Process(target=producer, args=(str(i), '包子', queue,))
        p_list.append(p)
        p.start()
    for j in range(5):
        c = Process(target=consumer, args=(str(j), queue,))
        c.daemon = True
        c.start()

    [i.join() for i in p_list]
