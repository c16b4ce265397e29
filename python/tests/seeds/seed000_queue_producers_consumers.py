# Seed 000_b5150c003b7b0392.txt, example 3: "消息传递 使用queue(队列) 实现" (two producers, two
# consumers on one Queue).
# Changed: the import line names shmq; `import queue` added; the consumers' endless
# `while True` ends when the queue stays empty for 1 s (get timeout, queue.Empty), so that
# their join() returns. Prints kept: the test checks each of the 6 items is eaten once.
# -*- coding: utf-8 -*-
"""
(C) rgc
All rights reserved
create time '2021/1/28 10:38'
Usage:
"""
import queue  # added
from shmq import Process, Queue


def queue_insert(q: Queue, l: list):
    """
    队列插入数据
    :param l:
    :return:
    """
    for item in l:
        print(f'开始制作:{item}')
        q.put(item)


def queue_pop(q: Queue):
    """
    队列弹出数据,并进行处理
    :param q:
    :return:
    """
    while True:
        try:                            # added
            item = q.get(True, 1)       # was: q.get(True)
        except queue.Empty:             # added
            break                       # added
        print(f'开始吃:{item}')


if __name__ == '__main__':
    q = Queue()
    p_product = Process(target=queue_insert, args=(q, ['饺子', '稀饭', '面皮']))
    p_product1 = Process(target=queue_insert, args=(q, ['苹果', '车厘子', '香蕉']))
    p_consumer = Process(target=queue_pop, args=(q,))
    p_consumer1 = Process(target=queue_pop, args=(q,))
    p_product.start()
    p_consumer.start()
    p_product1.start()
    p_consumer1.start()
    p_product.join()
    p_product1.join()
    p_consumer.join()
    p_consumer1.join()
    # p_consumer.terminate()
    # p_consumer1.terminate()
